"""The alert store on SQLite and PostgreSQL: limits replaced whole, one alert per run, deliveries once."""

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from resources.alert_store import ADDED_ALERT_COLUMNS, AlertStore

AS_OF = datetime(2026, 11, 21, tzinfo=UTC)
NOW = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)


def baselines(*rows: tuple[str, float]) -> pd.DataFrame:
    return pd.DataFrame(
        [(task_type, 10, limit / 2, limit / 4, limit, True, "mean_std") for task_type, limit in rows],
        columns=["task_type", "n_runs", "mean_s", "std_s", "upper_limit_s", "has_limit", "estimator"],
    )


def overdue(*run_ids: str) -> pd.DataFrame:
    return pd.DataFrame(
        [
            ("etl.orders", run_id, pd.Timestamp(NOW - timedelta(hours=1)), 3600.0, 600.0, 300.0, 10)
            for run_id in run_ids
        ],
        columns=["task_type", "run_id", "started_at", "elapsed_s", "upper_limit_s", "mean_s", "n_runs"],
    )


@pytest.fixture
def store(store_url: str) -> AlertStore:
    return AlertStore(url=store_url)


def test_an_empty_store_has_no_limits_yet(store):
    as_of, limits = store.latest_baselines()
    assert as_of is None and limits.empty


def test_the_latest_limits_are_read_and_a_refresh_replaces_them_whole(store):
    store.save_baselines(AS_OF - timedelta(days=1), baselines(("a", 10.0), ("old", 5.0)))
    store.save_baselines(AS_OF, baselines(("a", 20.0), ("b", 30.0)))
    store.save_baselines(AS_OF, baselines(("a", 25.0)))
    as_of, limits = store.latest_baselines()
    assert as_of == AS_OF
    assert limits[["task_type", "upper_limit_s"]].values.tolist() == [["a", 25.0]]


def test_a_task_type_without_a_limit_is_stored_with_none(store):
    rows = baselines(("a", 10.0)).assign(upper_limit_s=float("nan"), has_limit=False)
    store.save_baselines(AS_OF, rows)
    limits = store.latest_baselines()[1]
    assert not limits["has_limit"].iloc[0] and pd.isna(limits["upper_limit_s"].iloc[0])


def test_each_run_is_alerted_once_however_often_it_is_recorded(store):
    first = store.record_alerts(overdue("r1", "r2"), raised_at=NOW)
    again = store.record_alerts(overdue("r1", "r2", "r3"), raised_at=NOW + timedelta(minutes=10))
    assert first["run_id"].tolist() == ["r1", "r2"]
    assert again["run_id"].tolist() == ["r3"]
    alerts = store.alerts()
    assert alerts["run_id"].tolist() == ["r1", "r2", "r3"]
    assert alerts.loc[0, "raised_at"] == pd.Timestamp(NOW)
    assert alerts.loc[2, "raised_at"] == pd.Timestamp(NOW + timedelta(minutes=10))


def test_deliveries_are_per_sink_and_recorded_once(store):
    store.record_alerts(overdue("r1", "r2"), raised_at=NOW)
    first_id = int(store.alerts()["alert_id"].iloc[0])
    store.mark_delivered([first_id], "webhook", NOW)
    store.mark_delivered([first_id], "webhook", NOW + timedelta(minutes=1))
    assert store.undelivered("webhook")["run_id"].tolist() == ["r2"]
    assert store.undelivered("slack")["run_id"].tolist() == ["r1", "r2"]


def test_runs_that_differ_only_in_a_secret_are_alerted_apart_and_shown_redacted(store):
    """Both run ids redact to the same text, as do both task types: the alert is unique per run as
    the workflow holds it, not per what a sink may show of it."""
    runs = pd.concat(
        [
            overdue("deploy password=hunter2", "deploy password=swordfish"),
            overdue("r1").assign(task_type="etl.orders token=ghp_first"),
            overdue("r1").assign(task_type="etl.orders token=ghp_second"),
        ],
        ignore_index=True,
    )
    first = store.record_alerts(runs, raised_at=NOW)
    again = store.record_alerts(runs, raised_at=NOW + timedelta(minutes=10))
    alerts = store.alerts()
    assert len(first) == len(alerts) == 4 and again.empty
    assert alerts["run_id"].tolist() == ["deploy password=<assigned_secret>"] * 2 + ["r1", "r1"]
    assert alerts["task_type"].tolist() == ["etl.orders"] * 2 + ["etl.orders token=<assigned_secret>"] * 2


def test_the_chart_sensor_requests_one_chart_per_batch_of_new_alerts(store):
    import dagster as dg

    from dagster_project.sensors import build_duration_limit_chart_sensor

    job = dg.define_asset_job("chart_job", selection=["duration_limit_chart"])
    sensor = build_duration_limit_chart_sensor(job)

    def tick(cursor):
        return sensor(dg.build_sensor_context(cursor=cursor, resources={"alert_store": store}))

    assert store.newest_alert_id() is None
    assert isinstance(tick(None), dg.SkipReason)
    store.record_alerts(overdue("r1", "r2"), raised_at=NOW)
    first, newest = tick(None), store.newest_alert_id()
    # (PostgreSQL's sequence may skip ids: an INSERT that conflicts takes one too.)
    assert [request.run_key for request in first.run_requests] == [f"alerts-to-{newest}"]
    assert first.cursor == str(newest)
    assert isinstance(tick(first.cursor), dg.SkipReason)  # drawn already
    store.record_alerts(overdue("r1", "r2", "r3"), raised_at=NOW + timedelta(minutes=10))
    second = tick(first.cursor)
    assert second.cursor == str(store.newest_alert_id()) and int(second.cursor) > newest
    assert [request.run_key for request in second.run_requests] == [f"alerts-to-{second.cursor}"]


# The alerts table as stores made before the source fields have it.
OLD_ALERTS_DDL = """
CREATE TABLE alerts (
    alert_id {serial} PRIMARY KEY, task_type TEXT NOT NULL, run_id TEXT NOT NULL,
    started_at {time} NOT NULL, elapsed_s FLOAT NOT NULL, upper_limit_s FLOAT NOT NULL,
    mean_s FLOAT, n_runs INTEGER, raised_at {time} NOT NULL, run_key VARCHAR(64) NOT NULL,
    CONSTRAINT alerts_once_per_run UNIQUE (run_key)
)"""


def test_a_store_made_before_the_source_fields_keeps_its_alerts_and_gains_the_columns(store_url):
    engine = sa.create_engine(store_url)
    postgres = engine.dialect.name == "postgresql"
    with engine.begin() as connection:
        ddl = OLD_ALERTS_DDL.format(
            serial="SERIAL" if postgres else "INTEGER",
            time="TIMESTAMP WITH TIME ZONE" if postgres else "DATETIME",
        )
        connection.execute(sa.text(ddl))
        connection.execute(
            sa.text(
                "INSERT INTO alerts (task_type, run_id, started_at, elapsed_s, upper_limit_s, mean_s, "
                "n_runs, raised_at, run_key) VALUES ('etl.orders', 'r-old', :t, 3600, 600, 300, 10, :t, 'k')"
            ),
            {"t": NOW},
        )
    engine.dispose()
    store = AlertStore(url=store_url)
    fields = {"dag_id": "shop", "task_id": "group.fetch", "dag_run_id": "manual__1.5", "map_index": 2,
              "try_number": 3, "link": "https://airflow.example.com/dags/shop"}  # fmt: skip
    new = store.record_alerts(overdue("r-new").assign(**fields), raised_at=NOW)
    assert new["run_id"].tolist() == ["r-new"]
    alerts = store.alerts()
    assert alerts["run_id"].tolist() == ["r-old", "r-new"]
    assert alerts.loc[0, list(fields)].isna().all()
    assert alerts.loc[1, list(fields)].tolist() == list(fields.values())
    # A second process finds the columns there and adds nothing.
    AlertStore(url=store_url).alerts()
    engine = sa.create_engine(store_url)
    columns = [column["name"] for column in sa.inspect(engine).get_columns("alerts")]
    engine.dispose()
    assert columns[-len(ADDED_ALERT_COLUMNS) :] == list(ADDED_ALERT_COLUMNS)
    # An alert made before there were queue alerts is about a running task.
    assert store.alerts()["phase"].tolist() == ["running", "running"]


def test_a_new_store_has_the_source_fields_and_alerts_without_them_leave_them_empty(store):
    store.record_alerts(overdue("r1"), raised_at=NOW)
    alerts = store.alerts()
    assert alerts.loc[0, ["dag_id", "task_id", "dag_run_id", "map_index", "try_number", "link"]].isna().all()


def test_psycopg_3_urls_keep_the_store_as_psycopg2_ones_do(postgres_url):
    """postgresql+psycopg:// (psycopg 3, Airflow 3's driver) beside postgresql+psycopg2://."""
    psycopg3 = AlertStore(url=postgres_url.replace("postgresql+psycopg2://", "postgresql+psycopg://"))
    psycopg2 = AlertStore(url=postgres_url)
    psycopg3.save_baselines(AS_OF, baselines(("etl.orders", 600.0)))
    assert psycopg2.latest_baselines()[1]["upper_limit_s"].tolist() == [600.0]
    assert psycopg3.record_alerts(overdue("r1").assign(map_index=1), raised_at=NOW)["run_id"].tolist() == [
        "r1"
    ]
    assert psycopg2.record_alerts(overdue("r1"), raised_at=NOW).empty
    assert psycopg3.alerts()["map_index"].tolist() == [1]
    assert psycopg3.claim_sink("webhook", "a", NOW, NOW + timedelta(minutes=1))
    assert not psycopg2.claim_sink("webhook", "b", NOW, NOW + timedelta(minutes=1))
