"""The error-group catalog in faultline's database: backfills in any order leave the catalog of date
order, on SQLite and PostgreSQL."""

import random
from datetime import UTC, datetime

import pandas as pd
import sqlalchemy as sa

from faultline import catalog
from faultline.catalog import CatalogSettings, catalog_states
from resources.error_catalog import ErrorCatalogStore, checkpoint_groups_table, checkpoint_table
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


def test_a_backfill_and_a_day_again_after_days_recorded_in_order_leave_the_catalog_of_date_order(
    store_url, tmp_path
):
    days = history(12)
    store = ErrorCatalogStore(url=store_url)
    # Days 1 to 10 each after the last (each goes on from the checkpoint), then 12, 11 (a backfill)
    # and 5 again.
    for i in [*range(10), 11, 10, 4]:
        store.record_day(days[i])
    pd.testing.assert_frame_equal(store.group_days(), catalog_states(days), check_exact=False, rtol=1e-9)
    scratch = ErrorCatalogStore(url=f"sqlite:///{tmp_path / 'scratch.db'}")
    for each in days:
        scratch.record_day(each)
    pd.testing.assert_frame_equal(store.groups(), scratch.groups())
    # And the checkpoint the last recording left goes on as the in-order one does.
    later = day("2026-11-13", 1000, cluster(0, 300, OOM, HINTS["oom"]), cluster(1, 60, PROBE, HINTS["probe"]))
    pd.testing.assert_frame_equal(
        store.record_day(later), scratch.record_day(later), check_exact=False, rtol=1e-9
    )
    # OOM tripled, PROBE back after a week, DNS missing its first day.
    thirteenth = store.group_days().query("day == '2026-11-13'")
    assert sorted(thirteenth["state"]) == ["escalating", "ongoing", "regressed"]


def test_a_catalog_made_before_the_checkpoint_tables_gets_them_on_its_next_day(store_url):
    days = history(12)
    store = ErrorCatalogStore(url=store_url)
    for each in days[:6]:
        store.record_day(each)
    engine = sa.create_engine(store_url)
    with engine.begin() as connection:
        checkpoint_groups_table.drop(connection)
        checkpoint_table.drop(connection)
    engine.dispose()
    # A new process's store: it creates the missing tables, replays the six days, keeps the checkpoint.
    store = ErrorCatalogStore(url=store_url)
    for each in days[6:]:
        store.record_day(each)
    pd.testing.assert_frame_equal(store.group_days(), catalog_states(days), check_exact=False, rtol=1e-9)
    with store._connect() as connection:
        kept = connection.execute(
            sa.select(checkpoint_table.c.day).order_by(checkpoint_table.c.day)
        ).scalars()
        assert list(kept) == [each.day for each in days[-7:]]


def test_the_newest_day_replays_only_itself_and_other_settings_replay_every_day(monkeypatch, tmp_path):
    days = history(12)
    store = ErrorCatalogStore(url=f"sqlite:///{tmp_path / 'catalog.db'}")
    for each in days[:10]:
        store.record_day(each)
    matched, judged = [], []
    match, judge = catalog._Matcher.match, catalog._Judge.judge
    monkeypatch.setattr(catalog._Matcher, "match", lambda self, d: matched.append(d.day) or match(self, d))
    monkeypatch.setattr(
        catalog._Judge, "judge", lambda self, d, *args: judged.append(d) or judge(self, d, *args)
    )
    store.record_day(days[10])
    assert matched == judged == [days[10].day]
    # The report's trend: the last 2 recorded days only, the rows every day's read would give.
    recent = store.record_day(days[11], recent_days=2)
    assert matched == judged == [days[10].day, days[11].day]
    everything = store.group_days()
    pd.testing.assert_frame_equal(
        recent, everything[everything["day"] >= days[10].day].reset_index(drop=True)
    )
    matched.clear()
    store.record_day(days[11], CatalogSettings(resolved_after_days=2))
    assert matched == [each.day for each in days]


def test_a_day_of_the_last_week_recorded_again_replays_from_the_checkpoint_before_it(monkeypatch, store_url):
    days = history(12)
    store = ErrorCatalogStore(url=store_url, checkpoint_days=4)
    for each in days:
        store.record_day(each)
    matched = []
    match = catalog._Matcher.match
    monkeypatch.setattr(catalog._Matcher, "match", lambda self, d: matched.append(d.day) or match(self, d))
    # Day 10 again, with its OOM cluster grown 3x: days 10 to 12 are replayed, from day 9's replay.
    tenth = days[9]
    grown = tenth.clusters.assign(n_events=tenth.clusters["n_events"] * 3)
    store.record_day(catalog.DayClusters(tenth.day, tenth.n_events, grown))
    assert matched == [each.day for each in days[9:]]
    changed = [*days[:9], catalog.DayClusters(tenth.day, tenth.n_events, grown), *days[10:]]
    pd.testing.assert_frame_equal(store.group_days(), catalog_states(changed), check_exact=False, rtol=1e-9)
    # Day 8 is older than the 4 kept (9 to 12): every day again. The newest day again: itself.
    matched.clear()
    store.record_day(days[7])
    assert matched == [each.day for each in days]
    matched.clear()
    store.record_day(days[11])
    assert matched == [days[11].day]
    pd.testing.assert_frame_equal(store.group_days(), catalog_states(changed), check_exact=False, rtol=1e-9)
    with store._connect() as connection:
        kept = connection.execute(sa.select(checkpoint_table.c.day).order_by(checkpoint_table.c.day)).scalars()
        assert list(kept) == [each.day for each in days[8:]]
        groups_days = connection.execute(sa.select(checkpoint_groups_table.c.day).distinct()).scalars()
        assert sorted(groups_days) == [each.day for each in days[8:]]
