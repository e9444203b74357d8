"""The `dagster` error source reads a deployment's own failures from its instance: real runs that fail
in five ways (a KeyError parsing orders, a failed asset check, a resource that cannot connect, a
socket timeout, run monitoring's maximum runtime), each a row whose `text` groups by root cause."""

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from unittest import mock

import dagster as dg
import dagster_postgres.utils
import pandas as pd
import pytest
from conftest import until
from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._daemon.monitoring.run_monitoring import check_run_timeout

from assets import error_clusters
from assets.settings import Settings
from faultline.cleaning import build_corpus
from faultline.event_shape import field_at
from resources.dagster_failures import DAGSTER_FAILURE_SHAPE, DagsterFailures
from resources.error_source import DUMP_COLUMNS
from resources.error_sources import error_event_format
from resources.outages import SourceUnavailableError
from resources.part_store import PartStore
from resources.report_store import ReportStore

PRICES = {"SKU-1001": 12.5}


class OrderConfig(dg.Config):
    payload: str


@dg.asset
def parsed_orders(config: OrderConfig) -> list[float]:
    order = json.loads(config.payload)
    return [PRICES[line["sku"]] for line in order["lines"]]


class TotalsConfig(dg.Config):
    negative: int


@dg.asset
def order_totals() -> None:
    pass


@dg.asset_check(asset=order_totals)
def totals_are_positive(config: TotalsConfig) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=config.negative == 0,
        description=f"{config.negative} orders have a negative total",
        metadata={"negative_totals": config.negative},
    )


@dg.asset_check(asset=order_totals, blocking=True)
def totals_are_present() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, description="2 orders have no total")


class WarehouseResource(dg.ConfigurableResource):
    port: int

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        socket.create_connection(("127.0.0.1", self.port), timeout=5).close()


@dg.asset
def warehouse_rows(warehouse: WarehouseResource) -> None:
    pass


class RatesConfig(dg.Config):
    port: int
    timeout_s: float


@dg.asset
def exchange_rates(config: RatesConfig) -> bytes:
    with socket.create_connection(("127.0.0.1", config.port), timeout=config.timeout_s) as connection:
        connection.sendall(b"GET /rates\n")
        return connection.recv(1024)


@dg.op
def export_rows() -> None:
    pass


@dg.job
def nightly_export() -> None:
    export_rows()


FAIL_NOW, RELEASE = threading.Event(), threading.Event()


@dg.op(tags={"dagster/priority": "1"})  # runs before archive_export, which hangs
def push_export() -> None:
    FAIL_NOW.wait(60)
    raise ConnectionResetError("[Errno 104] Connection reset by peer")


@dg.op
def archive_export() -> None:
    RELEASE.wait(60)


@dg.job
def long_export() -> None:
    push_export()
    archive_export()


def closed_port() -> int:
    """A port nothing listens on: connecting is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_past_its_max_runtime(instance: dg.DagsterInstance, max_runtime_s: int) -> str:
    """A run of nightly_export started `max_runtime_s` + 5 s ago, stopped by run monitoring's own
    check (the daemon's code; only the launcher's kill of a process is stood in for)."""
    run = instance.create_run_for_job(
        job_def=nightly_export, tags={"dagster/max_runtime": str(max_runtime_s)}
    )
    started = DagsterEvent(event_type_value=DagsterEventType.RUN_START.value, job_name="nightly_export")
    instance.handle_new_event(
        EventLogEntry(
            error_info=None,
            level="DEBUG",
            user_message="",
            run_id=run.run_id,
            timestamp=time.time() - max_runtime_s - 5,
            dagster_event=started,
        )
    )
    with mock.patch.object(instance.run_launcher, "terminate", return_value=True):
        check_run_timeout(instance, instance.get_run_record_by_id(run.run_id), logging.getLogger(), 0)
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
    return run.run_id


def order_of(sku: str) -> dict:
    return {"id": 7, "lines": [{"sku": "SKU-1001"}, {"sku": sku}]}


def parse_orders(instance: dg.DagsterInstance, order: dict) -> dg.ExecuteInProcessResult:
    config = {"ops": {"parsed_orders": {"config": {"payload": json.dumps(order)}}}}
    return dg.materialize([parsed_orders], instance=instance, run_config=config, raise_on_error=False)


def check_totals(instance: dg.DagsterInstance, negative: int) -> dg.ExecuteInProcessResult:
    config = {"ops": {"order_totals_totals_are_positive": {"config": {"negative": negative}}}}
    return dg.materialize(
        [order_totals, totals_are_positive], instance=instance, run_config=config, raise_on_error=False
    )


def load_warehouse(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    resources = {"warehouse": WarehouseResource(port=closed_port())}
    return dg.materialize([warehouse_rows], instance=instance, resources=resources, raise_on_error=False)


def fetch_rates(instance: dg.DagsterInstance, port: int, timeout_s: float) -> dg.ExecuteInProcessResult:
    config = {"ops": {"exchange_rates": {"config": {"port": port, "timeout_s": timeout_s}}}}
    return dg.materialize([exchange_rates], instance=instance, run_config=config, raise_on_error=False)


def read_failures(
    instance: dg.DagsterInstance,
    start: datetime,
    end: datetime,
    rows_per_part: int = 1000,
    source: DagsterFailures | None = None,
):
    with dg.build_resources({"event_store": source or DagsterFailures()}, instance=instance) as built:
        return list(built.event_store.iter_batches(start, end, rows_per_part))


def rows_of(parts: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=DUMP_COLUMNS)


def payloads(rows: pd.DataFrame) -> list[dict]:
    return [json.loads(payload) for payload in rows["payload"]]


def day_around(moment: datetime) -> tuple[datetime, datetime]:
    return moment - timedelta(hours=1), moment + timedelta(hours=1)


@pytest.fixture(scope="module")
def failing_instance(tmp_path_factory) -> Iterator[tuple[dg.DagsterInstance, dict[str, list[str]]]]:
    """A SQLite instance (run-sharded, Dagster's default) with two failures of each of five causes,
    and one successful run; with each cause's run ids, in the order they ran."""
    home = tmp_path_factory.mktemp("dagster_home")
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        runs: dict[str, list[str]] = {}
        with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
            port = silent.getsockname()[1]
            for cause, result in [
                ("KeyError", parse_orders(instance, order_of("SKU-1042"))),
                ("KeyError", parse_orders(instance, order_of("SKU-2207"))),
                ("totals_are_positive", check_totals(instance, negative=3)),
                ("totals_are_positive", check_totals(instance, negative=12)),
                ("ConnectionRefusedError", load_warehouse(instance)),
                ("ConnectionRefusedError", load_warehouse(instance)),
                ("TimeoutError", fetch_rates(instance, port, timeout_s=0.2)),
                ("TimeoutError", fetch_rates(instance, port, timeout_s=0.3)),
                ("succeeded", parse_orders(instance, order_of("SKU-1001"))),
            ]:
                runs.setdefault(cause, []).append(result.run_id)
        runs["max runtime"] = [run_past_its_max_runtime(instance, 60), run_past_its_max_runtime(instance, 90)]
        yield instance, runs


def test_each_failure_is_one_row_with_its_root_cause(failing_instance):
    instance, runs = failing_instance
    parts = read_failures(instance, *day_around(datetime.now(UTC)))
    rows = rows_of(parts)
    assert list(rows.columns) == DUMP_COLUMNS
    assert str(rows["created_at"].dtype) == "datetime64[ns, UTC]" and rows["id"].dtype == "int64"
    assert rows["id"].is_unique
    events = payloads(rows)
    by_run = {event["run_id"]: event for event in events}
    # One row per failed run and per failed check; the successful run and the runs' own
    # RUN_FAILURE after a step failed are not rows.
    assert len(events) == 10 and len(by_run) == 10
    assert runs["succeeded"][0] not in by_run

    first, second = (by_run[run_id] for run_id in runs["KeyError"])
    assert first["kind"] == second["kind"] == "step_failure"
    # The comprehension's frame is its function's: Python 3.12 has no frame of its own for it.
    assert first["text"] == "KeyError: 'SKU-1042'\n at test_dagster_failures_source.py:parsed_orders"
    assert second["text"] == "KeyError: 'SKU-2207'\n at test_dagster_failures_source.py:parsed_orders"
    assert first["error_class"] == "KeyError" and first["message"] == "'SKU-1042'"
    assert first["error_chain"] == ["DagsterExecutionStepExecutionError", "KeyError"]
    assert first["stack_top"][-1] == "test_dagster_failures_source.py:parsed_orders"
    assert len(first["stack_top"]) == 3
    assert first["step_key"] == "parsed_orders" and first["asset"] == "parsed_orders"
    assert first["job"] == "__ephemeral_asset_job__" and first["error_source"] == "USER_CODE_ERROR"

    checks = [by_run[run_id] for run_id in runs["totals_are_positive"]]
    assert [check["text"] for check in checks] == [
        "Asset check totals_are_positive on order_totals failed: 3 orders have a negative total",
        "Asset check totals_are_positive on order_totals failed: 12 orders have a negative total",
    ]
    assert checks[0]["kind"] == "asset_check_failed" and checks[0]["check"] == "totals_are_positive"
    assert checks[0]["asset"] == "order_totals" and checks[0]["severity"] == "ERROR"
    assert checks[0]["blocking"] is False and checks[1]["metadata"] == {"negative_totals": 12}
    # A check that fails does not fail its run: the source reads successful runs too.
    assert instance.get_run_by_id(runs["totals_are_positive"][0]).status == dg.DagsterRunStatus.SUCCESS

    for run_id in runs["ConnectionRefusedError"]:
        refused = by_run[run_id]
        assert refused["kind"] == "run_failure" and refused["failure_reason"] == "RUN_EXCEPTION"
        assert (
            refused["text"]
            == "ConnectionRefusedError: [Errno 111] Connection refused\n at socket.py:create_connection"
        )
        assert refused["error_chain"] == ["DagsterResourceFunctionError", "ConnectionRefusedError"]
        assert "test_dagster_failures_source.py:setup_for_execution" in refused["stack_top"]

    for run_id in runs["TimeoutError"]:
        timed_out = by_run[run_id]
        assert timed_out["kind"] == "step_failure" and timed_out["asset"] == "exchange_rates"
        assert (
            timed_out["text"] == "TimeoutError: timed out\n at test_dagster_failures_source.py:exchange_rates"
        )

    stopped = [by_run[run_id] for run_id in runs["max runtime"]]
    assert [event["text"] for event in stopped] == [
        "Exceeded maximum runtime of 60 seconds.",
        "Exceeded maximum runtime of 90 seconds.",
    ]
    assert stopped[0]["kind"] == "run_failure" and stopped[0]["error_class"] is None
    assert stopped[0]["job"] == "nightly_export" and stopped[0]["failure_reason"] is None

    # Each row is an event of its run: on run-sharded SQLite the id's low 32 bits are the event's
    # storage id in its run, the high ones the run's; the row's time is the event's.
    run_storage_ids = {record.dagster_run.run_id: record.storage_id for record in instance.get_run_records()}
    for row, event in zip(rows.itertuples(), events, strict=True):
        assert row.id >> 32 == run_storage_ids[event["run_id"]]
        records = instance.get_records_for_run(event["run_id"]).records
        (record,) = [record for record in records if record.storage_id == row.id & 0xFFFFFFFF]
        assert row.created_at.timestamp() == pytest.approx(record.event_log_entry.timestamp, abs=1e-6)


def test_the_shape_reads_kind_job_and_text(failing_instance):
    instance, _ = failing_instance
    rows = rows_of(read_failures(instance, *day_around(datetime.now(UTC))))
    shape = DAGSTER_FAILURE_SHAPE
    assert shape.layout == "event" and shape.error_states is None
    for event in payloads(rows):
        assert field_at(event, shape.message_field) == event["text"]
        assert field_at(event, shape.state_field) in {"step_failure", "asset_check_failed", "run_failure"}
        assert field_at(event, shape.scope_field) in {"__ephemeral_asset_job__", "nightly_export"}


def test_failures_of_one_cause_share_a_template_and_causes_differ(failing_instance):
    instance, runs = failing_instance
    rows = rows_of(read_failures(instance, *day_around(datetime.now(UTC))))
    events = payloads(rows)
    cause_of = {run_id: cause for cause, run_ids in runs.items() for run_id in run_ids}
    corpus = build_corpus(pd.DataFrame({"message": [event["text"] for event in events]}))
    templates = corpus.variants["template"].to_numpy()[corpus.events["variant"].to_numpy()]
    templates_by_cause: dict[str, set[str]] = {}
    for event, template in zip(events, templates, strict=True):
        templates_by_cause.setdefault(cause_of[event["run_id"]], set()).add(template)
    assert {cause: len(found) for cause, found in templates_by_cause.items()} == {
        "KeyError": 1,
        "totals_are_positive": 1,
        "ConnectionRefusedError": 1,
        "TimeoutError": 1,
        "max runtime": 1,
    }
    assert len(set(templates)) == 5  # five causes, five templates


def test_a_day_is_read_in_parts_and_only_its_own_events(failing_instance):
    instance, _ = failing_instance
    start, end = day_around(datetime.now(UTC))
    whole = rows_of(read_failures(instance, start, end))
    parts = read_failures(instance, start, end, rows_per_part=3)
    assert [len(part) for part in parts] == [3, 3, 3, 1]
    pd.testing.assert_frame_equal(rows_of(parts), whole)
    # Runs read two at a time (11 runs: six pages) give the same rows in the same order.
    paged = read_failures(instance, start, end, source=DagsterFailures(runs_per_read=2))
    pd.testing.assert_frame_equal(rows_of(paged), whole)
    # The window is [start, end) of the events' times: cut at the fourth row's time.
    cut = whole["created_at"].iloc[3].to_pydatetime()  # microseconds, as the instance keeps them
    before, after = rows_of(read_failures(instance, start, cut)), rows_of(read_failures(instance, cut, end))
    assert before["id"].tolist() == whole["id"].iloc[:3].tolist()
    assert after["id"].tolist() == whole["id"].iloc[3:].tolist()
    assert read_failures(instance, end, end + timedelta(days=1)) == []


def test_the_same_day_reads_the_same_rows(failing_instance):
    instance, _ = failing_instance
    window = day_around(datetime.now(UTC))
    pd.testing.assert_frame_equal(
        rows_of(read_failures(instance, *window)), rows_of(read_failures(instance, *window))
    )


def test_a_run_still_going_is_read_for_the_steps_that_failed_today(instance):
    """A run whose record last changed before the day began (it started then) is read while it runs."""
    FAIL_NOW.clear(), RELEASE.clear()
    running = threading.Thread(
        target=long_export.execute_in_process, kwargs={"instance": instance, "raise_on_error": False}
    )
    running.start()
    try:
        started = dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])
        assert until(lambda: instance.get_run_records(started), patience_s=60)
        (record,) = instance.get_run_records(started)
        # Past the second of margin the source gives a run's last change.
        assert until(lambda: time.time() > record.update_timestamp.timestamp() + 1.1, patience_s=5)
        start = datetime.now(UTC)  # the day begins after the run's record last changed
        FAIL_NOW.set()

        def push_failed() -> bool:
            stats = instance.get_run_step_stats(record.dagster_run.run_id)
            return any(s.step_key == "push_export" and s.status.value == "FAILURE" for s in stats)

        assert until(push_failed, patience_s=60)
        assert instance.get_run_by_id(record.dagster_run.run_id).status == dg.DagsterRunStatus.STARTED
        events = payloads(rows_of(read_failures(instance, start, start + timedelta(hours=1))))
        assert [(event["kind"], event["step_key"], event["text"].splitlines()[0]) for event in events] == [
            ("step_failure", "push_export", "ConnectionResetError: [Errno 104] Connection reset by peer")
        ]
    finally:
        FAIL_NOW.set(), RELEASE.set()
        running.join(60)


def test_a_blocking_check_that_fails_is_one_row_not_three(instance):
    """Its evaluation, the step failure Dagster raises for it and the run's failure: one cause."""
    result = dg.materialize([order_totals, totals_are_present], instance=instance, raise_on_error=False)
    assert not result.success
    events = payloads(rows_of(read_failures(instance, *day_around(datetime.now(UTC)))))
    assert [(event["kind"], event["check"], event["blocking"]) for event in events] == [
        ("asset_check_failed", "totals_are_present", True)
    ]
    assert (
        events[0]["text"] == "Asset check totals_are_present on order_totals failed: 2 orders have no total"
    )


def test_failures_are_read_from_a_postgresql_instance(postgres_url, postgres_proxy, monkeypatch):
    password = "tr0ub4dor-and-3"  # trust auth takes any; the error must not show it
    storage = {"postgres": {"postgres_url": postgres_proxy.url(postgres_url, password=password)}}
    with dg.instance_for_test(overrides={"storage": storage}) as instance:
        assert not instance.event_log_storage.is_run_sharded
        results = [
            parse_orders(instance, order_of("SKU-1042")),
            check_totals(instance, negative=4),
            load_warehouse(instance),
        ]
        stopped = run_past_its_max_runtime(instance, 60)
        rows = rows_of(read_failures(instance, *day_around(datetime.now(UTC)), rows_per_part=2))
        events = payloads(rows)
        assert [(event["run_id"], event["kind"]) for event in events] == [
            (results[0].run_id, "step_failure"),
            (results[1].run_id, "asset_check_failed"),
            (results[2].run_id, "run_failure"),
            (stopped, "run_failure"),
        ]
        assert [event["text"].splitlines()[0] for event in events] == [
            "KeyError: 'SKU-1042'",
            "Asset check totals_are_positive on order_totals failed: 4 orders have a negative total",
            "ConnectionRefusedError: [Errno 111] Connection refused",
            "Exceeded maximum runtime of 60 seconds.",
        ]
        # On PostgreSQL a row's id is the event's own storage id in the event log.
        for row, event in zip(rows.itertuples(), events, strict=True):
            storage_ids = {
                record.storage_id for record in instance.get_records_for_run(event["run_id"]).records
            }
            assert row.id in storage_ids

        # The instance's database down (after Dagster's own retries, here without their 6 s of
        # waits) is an outage, which the step reading the source retries; the error shows no password.
        postgres_proxy.stop()
        monkeypatch.setattr(dagster_postgres.utils, "calculate_delay", lambda **_: 0)
        try:
            with pytest.raises(
                SourceUnavailableError, match="Dagster instance's storage could not be read"
            ) as error:
                read_failures(instance, *day_around(datetime.now(UTC)))
            assert password not in str(error.value)
        finally:
            postgres_proxy.start()


def test_the_error_graph_on_the_instance_groups_its_failures_one_group_per_cause(failing_instance, tmp_path):
    """The graph materialized for the day on the instance that holds the failed runs, configured as a
    deployment is (FAULTLINE_ERROR_SOURCE=dagster): five causes twice each, five groups of two."""
    instance, runs = failing_instance
    times = rows_of(read_failures(instance, *day_around(datetime.now(UTC))))["created_at"]
    day = times.min().strftime("%Y-%m-%d")
    if times.max().strftime("%Y-%m-%d") != day:
        pytest.skip("the failing runs straddle midnight UTC: no one day holds all ten")
    error_format = error_event_format(Settings.from_env({"FAULTLINE_ERROR_SOURCE": "dagster"}))
    assert error_format.profile == "generic"
    # The day is today's, which the daily partitions list only once it is over: seen from tomorrow.
    with dg.partition_loading_context(effective_dt=datetime.now(UTC) + timedelta(days=1)):
        result = dg.materialize(
            dg.load_assets_from_modules([error_clusters]),
            instance=instance,
            partition_key=day,
            resources={
                "event_store": DagsterFailures(),
                "error_format": error_format,
                "report_store": ReportStore(directory=str(tmp_path / "reports")),
                "part_store": PartStore(),
            },
        )
    # Every check of the graph's run passed: the run adds no failure of its own to the instance, which
    # the other tests here read.
    assert all(evaluation.passed for evaluation in result.get_asset_check_evaluations())
    assert result.asset_value("deployment_events_dump").n_rows == 10
    report = result.asset_value("error_cluster_report")
    groups = report.groups
    assert report.n_events == 10 and report.n_clusters == 5 and report.noise_share == 0
    assert groups["n_events"].tolist() == [2, 2, 2, 2, 2]
    assert groups["share_pct"].tolist() == [20.0] * 5
    # Each group holds the two failures of one cause: its events' runs are that cause's.
    cause_of = {run_id: cause for cause, run_ids in runs.items() for run_id in run_ids}
    rows = rows_of(read_failures(instance, *day_around(datetime.now(UTC))))
    run_of_row = dict(zip(rows["id"], (event["run_id"] for event in payloads(rows)), strict=True))
    events = result.asset_value("error_clusters").events
    causes = events.groupby("cluster_id")["row_id"].agg(
        lambda ids: sorted(cause_of[run_of_row[i]] for i in ids)
    )
    assert sorted(causes.tolist()) == [
        ["ConnectionRefusedError"] * 2,
        ["KeyError"] * 2,
        ["TimeoutError"] * 2,
        ["max runtime"] * 2,
        ["totals_are_positive"] * 2,
    ]
    # The labels name the causes, what varies (the SKU, the count, the limit) as <*>.
    label_of = groups.set_index("cluster_id")["label"]
    assert {found[0]: label_of[cluster_id] for cluster_id, found in causes.items()} == {
        "KeyError": "KeyError: <*>",
        "totals_are_positive": "Asset check totals_are_positive on order_totals failed: <*> orders have a "
        "negative total",
        "ConnectionRefusedError": "ConnectionRefusedError: [Errno 111] Connection refused",
        "TimeoutError": "TimeoutError: timed out",
        "max runtime": "Exceeded maximum runtime of <*>.",
    }
    markdown = (tmp_path / "reports" / f"error_clusters_{day}.md").read_text()
    assert "10 error events, 5 clusters, noise 0.0%." in markdown
