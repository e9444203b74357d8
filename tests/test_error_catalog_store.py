"""The error-group catalog in faultline's database: backfills in any order leave the catalog of date
order, on SQLite and PostgreSQL."""

import random
from datetime import UTC, datetime

import pandas as pd

from faultline.catalog import catalog_states
from resources.error_catalog import ErrorCatalogStore
from tests.test_catalog import HINTS, OOM, PROBE, cluster, day, history


def test_days_recorded_out_of_order_and_again_leave_the_catalog_of_date_order(store_url):
    days = history(12)
    expected = catalog_states(days)
    order = list(range(12))
    random.Random(3).shuffle(order)
    store = ErrorCatalogStore(url=store_url)
    # Out of order, then three days again (one of them the first).
    for i in [*order, 0, 7, 4]:
        store.record_day(days[i])
    stored = store.group_days()
    pd.testing.assert_frame_equal(stored, expected, check_exact=False, rtol=1e-9)
    # 3 groups: OOM (12 days), PROBE (5 days, then resolved), DNS (from day 9).
    groups = store.groups().set_index("label")
    assert len(groups) == 3
    assert groups.loc[next(iter(PROBE)), "last_seen"] == "2026-11-05"
    assert groups.loc[next(iter(PROBE)), "state"] == "resolved"
    assert groups.loc["could not resolve host vars", "first_seen"] == "2026-11-09"
    assert groups.loc[next(iter(OOM)), "state"] == "ongoing"


def test_a_day_recorded_again_with_other_clusters_replaces_what_it_was(store_url):
    store = ErrorCatalogStore(url=store_url)
    first = day("2026-11-01", 1000, cluster(0, 100, OOM, HINTS["oom"]))
    second = day("2026-11-02", 1000, cluster(0, 90, OOM, HINTS["oom"]))
    store.record_day(first)
    store.record_day(second)
    # The first day clustered again, now with a probe cluster too: the probe is new on day 1.
    store.record_day(
        day("2026-11-01", 1000, cluster(0, 100, OOM, HINTS["oom"]), cluster(1, 50, PROBE, HINTS["probe"]))
    )
    stored = store.group_days()
    assert len(stored) == 4
    assert list(stored.loc[stored["day"] == "2026-11-01", "state"]) == ["new", "new"]
    assert list(stored.loc[stored["day"] == "2026-11-02", "n_events"]) == [90, 0]


def test_an_alert_is_raised_once_per_group_state_and_day(store_url):
    store = ErrorCatalogStore(url=store_url)
    alert = pd.DataFrame(
        [{"group_id": "g1", "day": "2026-11-01", "state": "new", "text": "New", "n_events": 5, "share": 0.01,
          "expected_events": 0.0}]
    )  # fmt: skip
    now = datetime(2026, 11, 2, tzinfo=UTC)
    assert len(store.record_alerts(alert, now)) == 1
    assert len(store.record_alerts(alert, now)) == 0
    assert len(store.record_alerts(alert.assign(state="escalating"), now)) == 1
    assert list(store.undelivered("webhook")["state"]) == ["new", "escalating"]
    store.mark_delivered(store.undelivered("webhook")["alert_id"].iloc[:1], "webhook", now)
    assert list(store.undelivered("webhook")["state"]) == ["escalating"]
    assert len(store.undelivered("slack")) == 2
