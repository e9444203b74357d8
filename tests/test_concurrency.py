"""Concurrent work leaves consistent data: whole reports, one set of limits per day, one alert per run.

The races are made to happen, not hoped for: writers meet at a barrier before they write, and a
hook on SQLAlchemy's cursor pauses a transaction after its first statement until the other side
has done what the race is about (read the limits, or queued behind the lock), so the outcome does
not depend on timing.
"""

import multiprocessing
import os
import threading
from collections.abc import Callable
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import sqlalchemy as sa
from conftest import DEMO_DAY, DEMO_END, FIXED_NOW, FIXED_TODAY, fixed_clock, until
from upath import UPath

from assets import error_clusters
from assets.task_durations import task_duration_baselines
from dagster_project.sensors import build_long_running_tasks_sensor
from faultline.demo_data.deployment_events import generate_deployment_batches
from resources.alert_sinks import AlertSinks
from resources.alert_store import AlertStore
from resources.error_sources import ErrorEventFormat
from resources.event_store import DeploymentEventStore
from resources.io_manager import AtomicFilesystemIOManager, AtomicPickleIOManager
from resources.part_store import PartStore
from resources.report_store import ReportStore
from resources.workflow import SqlWorkflowService

# A safety net so that a broken test fails instead of hanging; never what a test measures.
PATIENCE_S = 120


def test_concurrent_writers_of_one_report_leave_one_whole_version_and_no_temporary_file(tmp_path: Path):
    store = ReportStore(directory=str(tmp_path))
    versions = [f"version {n}\n" * 100_000 for n in range(4)]
    barrier, failures = threading.Barrier(len(versions)), []

    def write(version: str) -> None:
        barrier.wait(timeout=PATIENCE_S)
        for _ in range(10):
            try:
                store.write_text("report.md", version)
            except Exception as error:  # noqa: BLE001 - every failure is what the test reports
                failures.append(repr(error))

    threads = [threading.Thread(target=write, args=(version,)) for version in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert (tmp_path / "report.md").read_text() in versions
    assert [path.name for path in tmp_path.iterdir()] == ["report.md"]


def test_a_report_replaced_while_it_is_read_is_always_read_whole(tmp_path: Path):
    """A person or a program opens the report while two runs rewrite it: every read is one version,
    never an empty, cut or mixed file. The writers start once the reader has read, and it reads
    until they are done."""
    store = ReportStore(directory=str(tmp_path))
    versions = [f"version {n}\n" * 100_000 for n in range(3)]
    store.write_text("report.md", versions[0])
    whole = {version.encode() for version in versions}
    reading = threading.Event()

    def write(version: str) -> None:
        assert reading.wait(timeout=PATIENCE_S)
        for _ in range(10):
            store.write_text("report.md", version)

    writers = [threading.Thread(target=write, args=(version,)) for version in versions[1:]]
    for writer in writers:
        writer.start()
    torn = []
    while not reading.is_set() or any(writer.is_alive() for writer in writers):
        read = (tmp_path / "report.md").read_bytes()
        reading.set()
        if read not in whole:
            torn.append(f"{len(read)} bytes")
    for writer in writers:
        writer.join()
    assert torn == []
    assert (tmp_path / "report.md").read_text() in versions[1:]


def test_an_asset_value_rewritten_while_it_is_read_is_always_read_whole(tmp_path: Path):
    """Two runs of one partition rewrite the same pickle while a step of one of them reads it."""
    io_manager = AtomicPickleIOManager(base_path=UPath(tmp_path))
    path = UPath(tmp_path) / "flattened_events"
    values = [pd.DataFrame({"x": np.full(300_000, n)}) for n in range(2)]
    io_manager.dump_to_path(None, values[0], path)
    writing, failures = threading.Barrier(3), []

    def write(value: pd.DataFrame) -> None:
        writing.wait(timeout=PATIENCE_S)
        for _ in range(10):
            io_manager.dump_to_path(None, value, path)

    writers = [threading.Thread(target=write, args=(value,)) for value in values]
    for writer in writers:
        writer.start()
    writing.wait(timeout=PATIENCE_S)
    while any(writer.is_alive() for writer in writers):
        try:
            read = io_manager.load_from_path(None, path)
        except Exception as error:  # noqa: BLE001 - a torn read is what the test reports
            failures.append(repr(error))
            continue
        if read["x"].nunique() != 1 or len(read) != 300_000:
            failures.append("a mix of two values")
    for writer in writers:
        writer.join()
    assert failures == []
    assert [p.name for p in tmp_path.iterdir()] == ["flattened_events"]


# Two materializations of one day at once ------------------------------------------------------

ASSETS = dg.load_assets_from_modules([error_clusters])
_barrier = None  # set in each process that runs a materialization meant to race


class MeetingReportStore(ReportStore):
    """The report store, but each write waits for the other run to be about to write the same file."""

    def write_text(self, name: str, content: str) -> Path:
        if _barrier is not None:
            _barrier.wait(timeout=PATIENCE_S)
        return super().write_text(name, content)


def materialize_day(home: str, events_url: str, reports: str) -> bool:
    instance = dg.DagsterInstance.from_config(home)
    try:
        return dg.materialize(
            ASSETS,
            instance=instance,
            partition_key=DEMO_DAY,
            resources={
                "io_manager": AtomicFilesystemIOManager(),  # the code location's, as in production
                "part_store": PartStore(),
                "event_store": DeploymentEventStore(url=events_url),
                "error_format": ErrorEventFormat(),
                "report_store": MeetingReportStore(directory=reports),
            },
        ).success
    finally:
        instance.dispose()


def materialize_day_at_the_barrier(barrier, home: str, events_url: str, reports: str) -> None:
    global _barrier
    _barrier = barrier
    os._exit(0 if materialize_day(home, events_url, reports) else 1)


def test_two_materializations_of_one_day_at_once_leave_the_reports_of_an_undisturbed_run(
    tmp_path: Path, postgres_databases
):
    events_url, dagster_url = postgres_databases(), postgres_databases()
    store = DeploymentEventStore(url=events_url)
    store.create_table()
    store.write_batches(generate_deployment_batches(end=DEMO_END, days=1, n_error_events=150, seed=9))
    home, reports = tmp_path / "dagster_home", tmp_path / "reports"
    home.mkdir()
    # Dagster's own storage on PostgreSQL too, as deployed: two processes write runs and events.
    postgres = dagster_url.replace("postgresql+psycopg2", "postgresql")
    (home / "dagster.yaml").write_text(
        f"storage:\n  postgres:\n    postgres_url: {postgres}\ntelemetry:\n  enabled: false\n"
    )
    assert materialize_day(str(home), events_url, str(reports))
    undisturbed = {path.name: path.read_bytes() for path in reports.iterdir()}
    assert sorted(undisturbed) == [f"error_clusters_{DEMO_DAY}.json", f"error_clusters_{DEMO_DAY}.md"]

    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(2)
    arguments = (barrier, str(home), events_url, str(reports))
    runs = [spawn.Process(target=materialize_day_at_the_barrier, args=arguments) for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join(timeout=PATIENCE_S * 3)
    assert [run.exitcode for run in runs] == [0, 0]
    assert {path.name: path.read_bytes() for path in reports.iterdir()} == undisturbed
    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.get_run_records()
        assert len(records) == 3 and all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in records)
        report = instance.get_latest_materialization_event(dg.AssetKey("error_cluster_report"))
        assert report.asset_materialization.partition == DEMO_DAY


# A sensor tick during a refresh of the limits ---------------------------------------------------


@contextmanager
def pause_before(
    thread: Callable[[], bool], statement_start: str, until: threading.Event, reached: threading.Event
):
    """In the thread for which `thread()` is true, before the first statement starting with
    `statement_start` is sent, set `reached` and wait for `until`. Pausing before the limits'
    INSERT holds the refresh between its DELETE and its INSERT: inside its transaction, if it has one."""

    def before_execute(conn, cursor, statement, parameters, context, executemany) -> None:
        if thread() and not reached.is_set() and statement.lstrip().startswith(statement_start):
            reached.set()
            assert until.wait(timeout=PATIENCE_S), f"nothing released the paused {statement_start!r}"

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", before_execute)
    try:
        yield
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", before_execute)


def waiting_for_a_lock(engine: sa.Engine) -> bool:
    """Whether a session on the test's PostgreSQL database waits for a lock another session holds."""
    with engine.connect() as connection:
        waiting = connection.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        ).scalar()
    return bool(waiting)


def seen_waiting_for_a_lock(engine: sa.Engine, thread: threading.Thread) -> bool:
    """Whether `thread` is seen waiting for a lock on the test's PostgreSQL database before it ends."""
    return until(lambda: waiting_for_a_lock(engine) or not thread.is_alive()) and thread.is_alive()


def on_signal(thread: Callable[[], bool], statement_part: str, signal: threading.Event):
    """In that thread, set `signal` once a statement holding `statement_part` has run."""

    def after_execute(conn, cursor, statement, parameters, context, executemany) -> None:
        if thread() and statement_part in statement:
            signal.set()

    return after_execute


TODAY = pd.Timestamp(FIXED_TODAY)
AS_OF = FIXED_TODAY
long_running_tasks_sensor = build_long_running_tasks_sensor(clock=fixed_clock)


def limits(*rows: tuple[str, float]) -> pd.DataFrame:
    return pd.DataFrame(
        [(task_type, 10, limit / 2, limit / 4, limit, True, "mean_std") for task_type, limit in rows],
        columns=["task_type", "n_runs", "mean_s", "std_s", "upper_limit_s", "has_limit", "estimator"],
    )


def workflow_with_history(url: str) -> SqlWorkflowService:
    """History: etl.a runs 1500-2300 s (limit about 2532 s), etl.b 90-110 s (about 116 s). Running for
    1000 s: r-a (etl.a), r-b (etl.b) and r-c (etl.c)."""
    ended, now = TODAY - pd.Timedelta(days=2), pd.Timestamp(FIXED_NOW)
    rows = [
        {"run_id": f"{task_type}-{i}", "task_type": task_type, "status": "success",
         "started_at": ended - pd.Timedelta(seconds=seconds), "ended_at": ended}
        for task_type, durations in (("etl.a", [1500, 1700, 1900, 2100, 2300]),
                                     ("etl.b", [90, 95, 100, 105, 110]))
        for i, seconds in enumerate(durations)
    ]  # fmt: skip
    rows += [
        {"run_id": f"r-{name}", "task_type": f"etl.{name}", "status": "running",
         "started_at": now - pd.Timedelta(seconds=1000), "ended_at": pd.NaT}
        for name in "abc"
    ]  # fmt: skip
    workflow = SqlWorkflowService(url=url)
    workflow.write_runs(pd.DataFrame(rows))
    return workflow


def refresh_limits(workflow, alert_store, failures: list) -> None:
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [task_duration_baselines],
            instance=instance,
            partition_key=(TODAY - timedelta(days=1)).strftime("%Y-%m-%d"),
            resources={"workflow": workflow, "alert_store": alert_store},
            raise_on_error=False,
        )
    if not result.success:
        failures.append(next(iter(result.get_step_failure_events())).event_specific_data.error.message)


def tick(instance, workflow, alert_store):
    resources = {"workflow": workflow, "alert_store": alert_store, "alert_sinks": AlertSinks()}
    return long_running_tasks_sensor(dg.build_sensor_context(instance=instance, resources=resources))


def alerted(alert_store: AlertStore) -> list[str]:
    return sorted(alert_store.alerts()["run_id"])


def test_a_sensor_tick_during_a_refresh_sees_the_old_limits_whole_and_no_run_is_alerted_twice(
    store_url, instance
):
    """Today's limits are being replaced (the writer has deleted them and not yet inserted) while
    the sensor ticks: it must see the old set whole. Each candidate set flags different runs:
    the old one r-a, the new one r-b, yesterday's r-a and r-c, none of them nothing."""
    workflow, alert_store = workflow_with_history(store_url), AlertStore(url=store_url)
    alert_store.save_baselines(AS_OF - timedelta(days=1), limits(("etl.a", 500.0), ("etl.c", 10.0)))
    alert_store.save_baselines(AS_OF, limits(("etl.a", 500.0)))

    writer, failures = threading.current_thread(), []
    writer_paused, limits_read = threading.Event(), threading.Event()
    during: dict = {}

    def sensor() -> None:
        assert writer_paused.wait(timeout=PATIENCE_S)
        during["tick"] = tick(instance, workflow, alert_store)

    sensor_thread = threading.Thread(target=sensor)
    in_writer = lambda: threading.current_thread() is writer  # noqa: E731
    in_sensor = lambda: threading.current_thread() is sensor_thread  # noqa: E731
    read_limits = on_signal(in_sensor, "FROM task_duration_baselines", limits_read)
    sa.event.listen(sa.engine.Engine, "after_cursor_execute", read_limits)
    try:
        with pause_before(in_writer, "INSERT INTO task_duration_baselines", limits_read, writer_paused):
            sensor_thread.start()
            refresh_limits(workflow, alert_store, failures)
            sensor_thread.join(timeout=PATIENCE_S)
    finally:
        sa.event.remove(sa.engine.Engine, "after_cursor_execute", read_limits)
    assert failures == [] and writer_paused.is_set() and limits_read.is_set()
    assert isinstance(during["tick"], dg.SensorResult)

    assert alerted(alert_store) == ["r-a"]  # the tick saw the old set, whole
    as_of, latest = alert_store.latest_baselines()
    assert as_of == AS_OF and sorted(latest["task_type"]) == ["etl.a", "etl.b"]
    tick(instance, workflow, alert_store)
    assert alerted(alert_store) == ["r-a", "r-b"]  # the next tick sees the new set
    # Nothing new: the tick records the tasks still over their limit, and alerts no one again.
    quiet = tick(instance, workflow, alert_store)
    assert quiet.skip_reason.skip_message.startswith("No new task over its limit")
    assert alerted(alert_store) == ["r-a", "r-b"]


def test_two_refreshes_of_one_day_at_once_leave_one_whole_set_of_limits(store_url):
    """The first refresh has deleted the day's limits and waits, before inserting the new ones, until
    the second is queued behind it (on PostgreSQL: seen waiting for a lock)."""
    workflow, alert_store = workflow_with_history(store_url), AlertStore(url=store_url)
    alert_store.save_baselines(AS_OF, limits(("etl.a", 500.0), ("etl.old", 60.0)))

    first_failures, second_failures = [], []
    first = threading.Thread(target=refresh_limits, args=(workflow, alert_store, first_failures))
    first_paused, second_queued = threading.Event(), threading.Event()

    def second() -> None:
        assert first_paused.wait(timeout=PATIENCE_S)
        refresh_limits(workflow, alert_store, second_failures)

    second_thread = threading.Thread(target=second)
    in_first = lambda: threading.current_thread() is first  # noqa: E731
    engine = sa.create_engine(store_url)

    seen_queued = []

    def watch_the_queue() -> None:
        """Release the first writer once the second is about to write (SQLite serializes writers) or,
        on PostgreSQL, is waiting for a lock the first holds; say whether that was seen."""
        assert first_paused.wait(timeout=PATIENCE_S)
        if engine.dialect.name == "sqlite":
            seen_queued.append(until(second_started.is_set))
        else:
            seen_queued.append(seen_waiting_for_a_lock(engine, second_thread))
        second_queued.set()

    second_started = threading.Event()
    in_second = lambda: threading.current_thread() is second_thread  # noqa: E731
    before_execute = on_signal(in_second, "DELETE FROM task_duration_baselines", second_started)
    watcher = threading.Thread(target=watch_the_queue)
    sa.event.listen(sa.engine.Engine, "before_cursor_execute", before_execute)
    try:
        with pause_before(in_first, "INSERT INTO task_duration_baselines", second_queued, first_paused):
            for thread in (first, second_thread, watcher):
                thread.start()
            for thread in (first, second_thread, watcher):
                thread.join(timeout=PATIENCE_S * 2)
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", before_execute)
        engine.dispose()
    assert first_paused.is_set() and seen_queued == [True]
    assert first_failures == [] and second_failures == []

    as_of, latest = alert_store.latest_baselines()
    assert as_of == AS_OF
    assert latest["task_type"].tolist() == ["etl.a", "etl.b"]
    reader = sa.create_engine(store_url)
    with reader.connect() as connection:
        per_day = connection.execute(
            sa.text("SELECT COUNT(*), COUNT(DISTINCT task_type) FROM task_duration_baselines")
        ).one()
    reader.dispose()
    assert tuple(per_day) == (2, 2)


def test_two_saves_of_one_days_limits_at_once_queue_and_leave_the_second_set_whole(postgres_url):
    """AlertStore.save_baselines itself, on PostgreSQL, with no retry around it. The first save has
    deleted the day's limits and waits, before inserting its own, until the second is seen waiting
    for a lock; then both go on. Queued behind the first, the second replaces the first's set whole;
    unqueued, its DELETE would find nothing it can see and its INSERT collide with the first's rows."""
    store = AlertStore(url=postgres_url)
    store.save_baselines(AS_OF, limits(("etl.a", 400.0), ("etl.old", 60.0)))
    failures = []

    def save(baselines: pd.DataFrame) -> None:
        try:
            store.save_baselines(AS_OF, baselines)
        except Exception as error:  # noqa: BLE001 - every failure is what the test reports
            failures.append(repr(error))

    first = threading.Thread(target=save, args=(limits(("etl.a", 500.0), ("etl.b", 50.0)),))
    second = threading.Thread(target=save, args=(limits(("etl.a", 700.0), ("etl.c", 5.0)),))
    first_paused, second_queued = threading.Event(), threading.Event()
    in_first = lambda: threading.current_thread() is first  # noqa: E731
    engine = sa.create_engine(postgres_url)
    try:
        with pause_before(in_first, "INSERT INTO task_duration_baselines", second_queued, first_paused):
            first.start()
            assert first_paused.wait(timeout=PATIENCE_S)
            second.start()
            seen_queued = seen_waiting_for_a_lock(engine, second)
            second_queued.set()
            first.join(timeout=PATIENCE_S)
            second.join(timeout=PATIENCE_S)
    finally:
        engine.dispose()
    assert seen_queued and failures == []
    as_of, latest = store.latest_baselines()
    assert as_of == AS_OF
    assert latest[["task_type", "upper_limit_s"]].values.tolist() == [["etl.a", 700.0], ["etl.c", 5.0]]
