"""The error_groups asset: the day's groups across days in the catalog, the report that leads with what
changed, and alerts once per group and change through the sinks."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from assets import error_clusters, error_groups
from faultline.demo_data.deployment_events import generate_deployment_batches
from faultline.report import group_alerts
from resources.alert_sinks import AlertSinks
from resources.error_catalog import ErrorCatalogStore
from resources.error_group_alerts import deliver_group_alerts
from resources.error_sources import ErrorEventFormat
from resources.part_store import PartStore
from resources.report_store import ReportStore
from tests.conftest import seeded_event_store
from tests.test_catalog import HINTS, OOM, PROBE, cluster, day

ASSETS = dg.load_assets_from_modules([error_clusters, error_groups])
END = datetime(2026, 11, 4, tzinfo=UTC)
DAYS = ["2026-11-01", "2026-11-02", "2026-11-03"]
# Backfills of old days raise alerts here: the days are weeks before the clock's.
ALERTS_FOR_OLD_DAYS = {"ops": {"error_groups": {"config": {"alert_max_age_days": 100_000}}}}


@pytest.fixture(scope="module")
def backfill(tmp_path_factory, recording_server_module):
    """Three small demo days materialized 3, 1, 2 and 2 again, into one catalog, a webhook listening."""
    folder = tmp_path_factory.mktemp("groups")
    (folder / "home").mkdir()
    rows = generate_deployment_batches(end=END, days=3, n_error_events=1_500)
    catalog = ErrorCatalogStore(url=f"sqlite:///{folder / 'catalog.db'}")
    webhook = recording_server_module()
    resources = {
        "event_store": seeded_event_store(folder, rows),
        "error_format": ErrorEventFormat(),
        "report_store": ReportStore(directory=str(folder / "reports")),
        "part_store": PartStore(),
        "error_catalog": catalog,
        "alert_sinks": AlertSinks(webhook_url=webhook.url),
    }
    results = {}
    with dg.instance_for_test(temp_dir=str(folder / "home")) as instance:
        for n, partition in enumerate([DAYS[2], DAYS[0], DAYS[1], DAYS[1]]):
            result = dg.materialize(
                ASSETS,
                instance=instance,
                partition_key=partition,
                resources=resources,
                run_config=ALERTS_FOR_OLD_DAYS,
            )
            results[n] = result.asset_materializations_for_node("error_groups")[0].metadata
    return results, catalog, webhook, folder


@pytest.fixture(scope="module")
def recording_server_module():
    from tests.conftest import RecordingServer

    servers = []

    def start(**kwargs):
        servers.append(RecordingServer(**kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_each_day_lists_its_groups_with_state_first_seen_and_trend_in_a_native_table(backfill):
    results, catalog, _, _ = backfill
    table = results[3]["groups"].value
    assert [column.name for column in table.schema.columns] == [
        "group", "state", "first_seen", "events", "share_pct", "expected", "trend", "trend_counts", "label",
    ]  # fmt: skip
    records = [record.data for record in table.records]
    assert len(records) == results[3]["n_groups"].value >= 10
    # Day 2 recorded after days 1 and 3: groups seen on day 1 were first seen then.
    first_seen = catalog.groups().set_index("group_id")["first_seen"]
    assert all(record["first_seen"] == first_seen[record["group"]] for record in records)
    assert sum(record["first_seen"] == DAYS[0] for record in records) >= 10
    # The trend runs up to the day: day 1's and day 2's counts.
    assert all(len(record["trend_counts"].split()) == 2 for record in records)


def test_the_first_day_recorded_after_a_later_one_makes_every_group_new_on_it(backfill):
    results, catalog, _, _ = backfill
    assert results[1]["n_new"].value == results[1]["n_groups"].value
    days = catalog.group_days()
    assert set(days.loc[days["day"] == DAYS[0], "state"]) == {"new"}


def test_the_report_file_leads_with_what_changed(backfill):
    results, _, _, folder = backfill
    text = Path(results[3]["report_file"].value).read_text()
    assert text.startswith(f"# Deployment error groups on {DAYS[1]}\n\n## What changed\n")
    assert text.index("## What changed") < text.index("## Groups")


def test_alerts_go_out_once_per_group_and_change_and_a_rerun_raises_none(backfill):
    results, catalog, webhook, _ = backfill
    alerts = catalog.alerts()
    # Days 3 and 1 were each the first recorded day when materialized: no alerts; day 2's run raised
    # one per group that turned new or escalating on it, its rerun none.
    assert results[0]["alerts_raised"].value == 0 and results[1]["alerts_raised"].value == 0
    assert results[2]["alerts_raised"].value == len(alerts)
    assert results[3]["alerts_raised"].value == 0
    assert [message["body"]["alert_id"] for message in webhook.received] == list(alerts["alert_id"])
    assert all(message["body"]["kind"] == "error_group" for message in webhook.received)


def test_a_new_and_an_escalating_group_alert_once_and_a_failed_sink_gets_them_next_time(
    tmp_path, recording_server
):
    days = [day(f"2026-11-0{i}", 1000, cluster(0, 20, OOM, HINTS["oom"])) for i in range(1, 9)]
    days.append(
        day("2026-11-09", 1000, cluster(0, 70, OOM, HINTS["oom"]), cluster(1, 30, PROBE, HINTS["probe"]))
    )
    store = ErrorCatalogStore(url=f"sqlite:///{tmp_path / 'catalog.db'}")
    for recorded in days:
        states = store.record_day(recorded)
    alerts = group_alerts(states, "2026-11-09")
    assert list(alerts["state"]) == ["new", "escalating"]
    assert alerts["text"].iloc[1].startswith("Deployment errors on 2026-11-09: escalating: ")
    assert "70 events (7.00%), 3.5x the 20.0" in alerts["text"].iloc[1]
    now = datetime(2026, 11, 10, 1, tzinfo=UTC)
    assert len(store.record_alerts(alerts, now)) == 2
    assert len(store.record_alerts(alerts, now)) == 0
    down = recording_server(failures=1)
    report = deliver_group_alerts(store, AlertSinks(webhook_url=down.url), now)
    assert report.delivered == {"webhook": 0} and "webhook" in report.failed
    report = deliver_group_alerts(store, AlertSinks(webhook_url=down.url), now)
    assert report.delivered == {"webhook": 2}
    assert [m["body"]["state"] for m in down.received] == ["new", "escalating"]
    assert deliver_group_alerts(store, AlertSinks(webhook_url=down.url), now).delivered == {"webhook": 0}
    assert len(store.undelivered("webhook")) == 0


def test_a_sink_another_run_is_delivering_to_is_left_to_it(tmp_path, recording_server):
    store = ErrorCatalogStore(url=f"sqlite:///{tmp_path / 'catalog.db'}")
    now = datetime(2026, 11, 10, 1, tzinfo=UTC)
    alert = pd.DataFrame(
        [{"group_id": "g1", "day": "2026-11-09", "state": "new", "text": "New", "n_events": 5, "share": 0.01,
          "expected_events": 0.0}]
    )  # fmt: skip
    store.record_alerts(alert, now)
    webhook = recording_server()
    sinks = AlertSinks(webhook_url=webhook.url)
    held_until = datetime.now(UTC) + timedelta(minutes=5)
    assert store.claim_sink("webhook", "another run", datetime.now(UTC), held_until)
    report = deliver_group_alerts(store, sinks, now)
    assert report.busy == ["webhook"] and webhook.received == []
    store.release_sink("webhook", "another run")
    assert deliver_group_alerts(store, sinks, now).delivered == {"webhook": 1}
    assert len(webhook.received) == 1
