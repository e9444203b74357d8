"""The SQL workflow service on SQLite and PostgreSQL: aggregates in SQL, bad rows counted, names checked."""

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from faultline.durations import (
    HISTOGRAM_COLUMNS,
    baselines_from_durations,
    baselines_from_histogram,
    baselines_from_moments,
    duration_histogram,
    screen_task_runs,
)
from resources.workflow import SqlWorkflowService

END = datetime(2026, 11, 20, tzinfo=UTC)
START = END - timedelta(days=14)
NOW = END + timedelta(hours=12)
HOSTILE_TYPE = 'x\'; DROP TABLE task_runs; --\n"quoted"'


def run(run_id, task_type, ended_at, seconds, status="success"):
    ended = pd.Timestamp(ended_at) if ended_at is not None else None
    started = (
        (ended - pd.Timedelta(seconds=seconds))
        if ended is not None
        else pd.Timestamp(START + timedelta(days=1))
    )
    return {
        "run_id": run_id,
        "task_type": task_type,
        "started_at": started,
        "ended_at": ended,
        "status": status,
    }


def running(run_id, started_at):
    return {**run(run_id, "etl.orders", None, 0, status="running"), "started_at": pd.Timestamp(started_at)}


def fixture_runs() -> pd.DataFrame:
    day = END - timedelta(days=3)
    rows = [
        run(f"orders-{i}", "etl.orders", day + timedelta(hours=i), d)
        for i, d in enumerate([60, 120, 180, 240, 300])
    ]
    rows += [
        run("orders-failed", "etl.orders", day, 10_000, status="failed"),
        run("orders-aborted", "etl.orders", day, 9_000, status="aborted"),
        run("edge-at-start", "window.edges", START, 100),
        run("edge-at-end", "window.edges", END, 100),
        run("edge-before", "window.edges", START - timedelta(seconds=1), 100),
    ]
    rows += [run(f"hostile-{i}", HOSTILE_TYPE, day + timedelta(minutes=i), 10) for i in range(5)]
    rows += [
        run("no-end", "etl.bad", None, 0),
        {**run("backwards", "etl.bad", day, 50), "started_at": pd.Timestamp(day + timedelta(seconds=50))},
        run("zero", "etl.bad", day, 0),
        run("zombie", "etl.bad", day, 30, status="zombie"),
        running("running-1", NOW - timedelta(minutes=9)),
        run("running-ended", "etl.orders", day, 30, status="running"),
        running("running-future", NOW + timedelta(hours=1)),
    ]  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture
def service(store_url: str) -> SqlWorkflowService:
    workflow = SqlWorkflowService(url=store_url)
    workflow.write_runs(fixture_runs())
    return workflow


def test_duration_aggregates_are_computed_in_sql_over_successful_runs_only(service):
    moments = service.duration_moments(START, END).set_index("task_type")
    assert moments.loc["etl.orders", "n_runs"] == 5
    assert moments.loc["etl.orders", "mean_s"] == pytest.approx(180)
    assert moments.loc["etl.orders", "mean_sq_s"] == pytest.approx(
        (60**2 + 120**2 + 180**2 + 240**2 + 300**2) / 5
    )
    baselines = baselines_from_moments(moments.reset_index()).set_index("task_type")
    assert baselines.loc["etl.orders", "std_s"] == pytest.approx(math.sqrt(9000))
    assert baselines.loc["etl.orders", "upper_limit_s"] == pytest.approx(180 + 2 * math.sqrt(9000))


def test_the_duration_histogram_is_summed_up_in_sql_as_pandas_sums_it(service):
    # The bad rows, the failed runs and the window's edges are left out as from the moments; the
    # hostile task type is data; a run is recent when it ended in the window's last two days.
    in_order = ["task_type", "recent", "bucket"]
    summed = service.duration_histogram(START, END).sort_values(in_order, ignore_index=True)
    expected = duration_histogram(service.successful_runs(START, END), pd.Timestamp(END))

    assert list(summed.columns) == list(HISTOGRAM_COLUMNS)
    pd.testing.assert_frame_equal(summed, expected, check_exact=False, rtol=1e-9, check_dtype=False)
    assert summed.groupby("task_type")["n_runs"].sum().to_dict() == {
        "etl.orders": 5, "window.edges": 1, HOSTILE_TYPE: 5,
    }  # fmt: skip
    assert not summed.loc[summed["task_type"].eq("window.edges"), "recent"].any()  # 14 days before END


def test_limits_from_the_sql_histogram_are_those_of_the_runs_themselves(store_url):
    # Two weeks of hourly runs of two task types, one of them three times slower in its last two
    # days (a level shift): every estimator's limits from the database's histogram are within a
    # bucket's width (2%) of the exact ones, and mean_std's are exact.
    rng = np.random.default_rng(3)
    hours = pd.date_range(START, END, freq="h", inclusive="left")
    rows = []
    for task_type, median_s in (("etl.orders", 300.0), ("etl.shifted", 40.0)):
        seconds = median_s * rng.lognormal(0, 0.4, len(hours))
        if task_type == "etl.shifted":
            seconds[hours >= END - timedelta(days=2)] *= 3
        rows += [
            run(f"{task_type}-{i}", task_type, ended, float(round(d)))
            for i, (ended, d) in enumerate(zip(hours + timedelta(minutes=30), seconds, strict=True))
        ]
    service = SqlWorkflowService(url=store_url)
    service.write_runs(pd.DataFrame(rows))
    runs = service.successful_runs(START, END)

    for estimator in ("mean_std", "log_mad", "quantile", "alert_budget"):
        exact = baselines_from_durations(runs, estimator).set_index("task_type")["upper_limit_s"]
        summed = baselines_from_histogram(service.duration_histogram(START, END), estimator)
        limits = summed.set_index("task_type")["upper_limit_s"]
        assert limits.to_numpy() == pytest.approx(
            exact.to_numpy(), rel=1e-9 if estimator == "mean_std" else 0.02
        )
    # The shift is followed: fitted without the runs' ends (so without it), the limit is another.
    shifted, unshifted = (
        baselines_from_durations(window, "quantile")
        .set_index("task_type")
        .loc["etl.shifted", "upper_limit_s"]
        for window in (runs, runs.drop(columns="ended_at"))
    )
    assert shifted != pytest.approx(unshifted, rel=0.1)


def test_the_window_includes_its_start_and_excludes_its_end(service):
    moments = service.duration_moments(START, END).set_index("task_type")
    assert moments.loc["window.edges", "n_runs"] == 1
    runs = service.successful_runs(START, END)
    assert set(runs.loc[runs["task_type"] == "window.edges", "run_id"]) == {"edge-at-start"}


def test_task_types_holding_quotes_sql_and_newlines_stay_data(service, store_url):
    moments = service.duration_moments(START, END).set_index("task_type")
    assert moments.loc[HOSTILE_TYPE, "n_runs"] == 5
    with sa.create_engine(store_url).connect() as connection:
        assert connection.execute(sa.text("SELECT COUNT(*) FROM task_runs")).scalar() == len(fixture_runs())


def test_successful_runs_carry_their_times_and_durations(service):
    runs = service.successful_runs(START, END)
    orders = runs[runs["task_type"] == "etl.orders"].sort_values("duration_s")
    assert orders["duration_s"].tolist() == pytest.approx([60, 120, 180, 240, 300])
    assert (orders["ended_at"] - orders["started_at"]).dt.total_seconds().tolist() == pytest.approx(
        [60, 120, 180, 240, 300]
    )
    assert str(orders["ended_at"].dt.tz) == "UTC"


def test_bad_rows_are_left_out_and_counted_with_their_reason(service):
    rejected = service.rejected_runs(START, END).set_index("run_id")["reason"].to_dict()
    assert rejected == {
        "no-end": "finished run without ended_at",
        "backwards": "ended_at before started_at",
        "zero": "zero duration",
        "zombie": "unknown status",
        "running-ended": "running run with ended_at set",
    }
    moments = service.duration_moments(START, END)
    assert "etl.bad" not in set(moments["task_type"])


def test_running_tasks_are_read_and_impossible_ones_rejected(service):
    running, rejected = service.running_tasks(NOW)
    assert running["run_id"].tolist() == ["running-1"]
    assert running["started_at"].iloc[0] == pd.Timestamp(NOW - timedelta(minutes=9)).tz_localize(None)
    assert dict(zip(rejected["run_id"], rejected["reason"], strict=True)) == {
        "running-ended": "running run with ended_at set",
        "running-future": "started in the future",
    }


def test_an_existing_airflow_table_is_read_in_place(store_url):
    table = sa.Table(
        "task_instance",
        sa.MetaData(),
        *(sa.Column(name, sa.Text()) for name in ("dag_id", "task_id", "run_id", "state")),
        sa.Column("map_index", sa.Integer()),
        sa.Column("start_date", sa.DateTime(timezone=True)),
        sa.Column("end_date", sa.DateTime(timezone=True)),
    )
    ended = END - timedelta(days=1)
    rows = [
        {"dag_id": "billing", "task_id": "load", "run_id": f"r{i}", "state": "success", "map_index": -1,
         "start_date": ended - timedelta(seconds=10 * (i + 1)), "end_date": ended}
        for i in range(5)
    ] + [{"dag_id": "billing", "task_id": "load", "run_id": "r9", "state": "upstream_failed", "map_index": -1,
          "start_date": ended - timedelta(hours=5), "end_date": ended}]  # fmt: skip
    engine = sa.create_engine(store_url)
    with engine.begin() as connection:
        table.create(connection)
        connection.execute(table.insert(), rows)
    engine.dispose()
    airflow = SqlWorkflowService(
        url=store_url,
        table="task_instance",
        task_type_columns=["dag_id", "task_id"],
        run_id_columns=["dag_id", "task_id", "run_id", "map_index"],
        started_at_column="start_date",
        ended_at_column="end_date",
        status_column="state",
        failed_statuses=["failed", "upstream_failed"],
    )
    moments = airflow.duration_moments(START, END)
    assert moments[["task_type", "n_runs"]].values.tolist() == [["billing.load", 5]]
    assert moments["mean_s"].iloc[0] == pytest.approx(30)
    assert airflow.rejected_runs(START, END).empty


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("table", "task_runs; DROP TABLE task_runs"),
        ("ended_at_column", "ended_at) --"),
        ("status_column", "a b"),
    ],
)
def test_names_that_are_not_plain_identifiers_are_refused(store_url, setting, value):
    with pytest.raises(ValueError, match=f"{setting}=.*is not a plain SQL identifier"):
        SqlWorkflowService(url=store_url, **{setting: value}).duration_moments(START, END)


def test_a_missing_column_is_named_with_the_setting_to_change(service, store_url):
    with pytest.raises(
        ValueError, match="table 'task_runs' has no column 'finished_at'; set `ended_at_column`"
    ):
        SqlWorkflowService(url=store_url, ended_at_column="finished_at").duration_moments(START, END)


# One screening: the same hostile rows get the same reason from the SQL source, on SQLite and on
# PostgreSQL, as from screen_task_runs. Times are text as a user's table or script would hold them.
IN_WINDOW, LATER = "2026-11-17 10:00:00+00:00", "2026-11-17 10:05:00+00:00"
AFTER_THE_WINDOW = "2026-11-20 02:00:00+00:00"


def raw(run_id, started=IN_WINDOW, ended=LATER, status="success", task_type="etl.hostile"):
    return dict(run_id=run_id, task_type=task_type, started_at=started, ended_at=ended, status=status)


HOSTILE_ROWS = {
    "every store": [
        (raw(None, task_type="etl.no-run-id"), "missing run_id"),
        (raw("no-task-type", task_type=None), "missing task_type"),
        (raw("no-status", status=None), "missing status"),
        (raw("zombie", status="zombie"), "unknown status"),
        (raw("shouting", status="SUCCESS"), "unknown status"),
        (raw("no-start", started=None), "missing started_at"),
        (raw("running-no-start", started=None, ended=None, status="running"), "missing started_at"),
        (raw("before-1677", started="1500-01-01 00:00:00+00:00"), "unparseable started_at"),
        (raw("after-2262", ended="2300-01-01 00:00:00+00:00"), "unparseable ended_at"),
        (raw("running-from-the-future", started=AFTER_THE_WINDOW, ended=None, status="running"),
         "started in the future"),
        # Backwards too, but the screening asks about the future first.
        (raw("ended-before-a-future-start", started=AFTER_THE_WINDOW), "started in the future"),
        (raw("running-ended", status="running"), "running run with ended_at set"),
        (raw("failed-no-end", ended=None, status="failed"), "finished run without ended_at"),
        (raw("backwards", started=LATER, ended=IN_WINDOW), "ended_at before started_at"),
        (raw("zero", ended=IN_WINDOW, status="aborted"), "zero duration"),
        (raw("valid"), None),
        (raw("valid-in-another-zone", started="2026-11-17 12:00:00+02:00"), None),
        (raw("valid-running", ended=None, status="running"), None),
    ],
    "sqlite": [
        (raw("nul\x00in-run-id"), "NUL character in run_id"),
        (raw("nul-in-task-type", task_type="etl\x00hostile"), "NUL character in task_type"),
        (raw("garbled-start", started="yesterday-ish"), "unparseable started_at"),
        (raw("empty-start", started=""), "unparseable started_at"),
        (raw("now-start", started="now"), "unparseable started_at"),
        (raw("number-start", started=1.7e9), "unparseable started_at"),
        (raw("february-30th", started="2026-02-30 10:00:00"), "unparseable started_at"),
        (raw("garbled-end", ended="2026-13-45 99:99"), "unparseable ended_at"),
        (raw("running-garbled-start", started="soon", ended=None, status="running"),
         "unparseable started_at"),
    ],
    "postgresql": [
        (raw("infinite-start", started="infinity"), "unparseable started_at"),
        (raw("infinite-end", ended="-infinity"), "unparseable ended_at"),
        (raw("year-10000", started="10000-01-01 00:00:00+00"), "unparseable started_at"),
        (raw("running-infinite-start", started="-infinity", ended=None, status="running"),
         "unparseable started_at"),
    ],
}  # fmt: skip


def reasons_by_run(*rejected: pd.DataFrame) -> dict[tuple, str]:
    """{(run_id, task_type): reason}; a run both rejected_runs and running_tasks report is in both."""
    found: dict[tuple, str] = {}
    for frame in rejected:
        for run_id, task_type, reason in frame[["run_id", "task_type", "reason"]].itertuples(index=False):
            key = (None if pd.isna(run_id) else run_id, None if pd.isna(task_type) else task_type)
            assert found.setdefault(key, reason) == reason, key
    return found


def test_hostile_rows_get_the_same_reason_from_sql_on_each_store_as_from_the_pandas_screening(store_url):
    dialect = sa.engine.make_url(store_url).get_backend_name()
    rows = HOSTILE_ROWS["every store"] + HOSTILE_ROWS[dialect]
    expected = {(row["run_id"], row["task_type"]): reason for row, reason in rows if reason}
    # No key and no types on SQLite, as another tool may have written the table; PostgreSQL's columns are
    # typed, so it holds what it can: infinity and far years, but no NUL and no garbled time.
    time_type = "timestamptz" if dialect == "postgresql" else ""
    engine = sa.create_engine(store_url)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                f"CREATE TABLE task_runs (run_id text, task_type text, started_at {time_type}, "
                f"ended_at {time_type}, status text)"
            )
        )
        connection.execute(
            sa.text("INSERT INTO task_runs VALUES (:run_id, :task_type, :started_at, :ended_at, :status)"),
            [row for row, _ in rows],
        )
    engine.dispose()
    service = SqlWorkflowService(url=store_url)

    _, screened = screen_task_runs(pd.DataFrame([row for row, _ in rows]), pd.Timestamp(END))
    # The SQL source screens as of the window's end; running tasks are screened as of `now`, here the same.
    from_sql = reasons_by_run(service.rejected_runs(START, END), service.running_tasks(END)[1])

    assert reasons_by_run(screened) == expected
    assert from_sql == expected
