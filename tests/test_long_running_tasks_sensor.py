"""The long_running_tasks sensor: one alert per overdue run, kept across ticks and restarts, sinks retried;
each tick that checks names the tasks over their limit and records them as the limits' check."""

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import FIXED_NOW, FIXED_TODAY, fixed_clock, until

from assets.task_durations import OVER_LIMIT_CHECK, task_duration_baselines, tasks_within_their_limit
from dagster_project.sensors import build_long_running_tasks_sensor, long_running_tasks_sensor
from resources.alert_sinks import AlertSinks
from resources.alert_store import AlertStore
from resources.sources import AirflowTaskInstances
from resources.workflow import SqlWorkflowService

TODAY = pd.Timestamp(FIXED_TODAY)
YESTERDAY = (TODAY - pd.Timedelta(days=1)).strftime("%Y-%m-%d")
ORDERS_LIMIT = 145 + 2 * math.sqrt(sum((d - 145) ** 2 for d in range(100, 200, 10)) / 9)  # about 205.6 s


def history() -> list[dict]:
    """Ten successful runs of each type two days ago: etl.orders 100..190 s, etl.slow 3000..3900 s."""
    rows = []
    for task_type, base, step in (("etl.orders", 100, 10), ("etl.slow", 3000, 100)):
        for i in range(10):
            ended = TODAY - pd.Timedelta(days=2) + pd.Timedelta(hours=i)
            rows.append(
                {"run_id": f"{task_type}-{i}", "task_type": task_type, "status": "success",
                 "started_at": ended - pd.Timedelta(seconds=base + step * i), "ended_at": ended}
            )  # fmt: skip
    return rows


def running(run_id: str, task_type: str, seconds_ago: float) -> dict:
    started = pd.Timestamp(FIXED_NOW) - pd.Timedelta(seconds=seconds_ago)
    return {
        "run_id": run_id,
        "task_type": task_type,
        "status": "running",
        "started_at": started,
        "ended_at": pd.NaT,
    }


def make_overdue(url: str, run_id: str, seconds: float) -> None:
    """Time passes for a running task: it has now run `seconds`."""
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE task_runs SET started_at = :started WHERE run_id = :run_id"),
            {
                "started": (FIXED_NOW - timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S.%f"),
                "run_id": run_id,
            },
        )
    engine.dispose()


@pytest.fixture
def stores(tmp_path: Path, instance) -> dict:
    """Workflow and alert store in one SQLite file, with limits learned for yesterday's partition."""
    url = f"sqlite:///{tmp_path / 'workflow.db'}"
    workflow, alert_store = SqlWorkflowService(url=url), AlertStore(url=url)
    workflow.write_runs(
        pd.DataFrame(
            history()
            + [
                running("r-stuck", "etl.orders", 3600),
                running("r-fine", "etl.orders", 60),
                running("r-slow-fine", "etl.slow", 3500),
                running("r-new-type", "etl.unknown", 5 * 3600),
            ]
        )
    )
    dg.materialize(
        [task_duration_baselines],
        instance=instance,
        partition_key=YESTERDAY,
        resources={"workflow": workflow, "alert_store": alert_store},
        # The seed's limit, which ORDERS_LIMIT computes by hand (the default is alert_budget).
        run_config={"ops": {"task_duration_baselines": {"config": {"estimator": "mean_std"}}}},
    )
    return {"url": url, "workflow": workflow, "alert_store": alert_store}


# The sensor as deployed, but told the time by the tests' clock: the runs above are dated from it.
sensor_at_fixed_now = build_long_running_tasks_sensor(clock=fixed_clock)


def tick(instance, stores: dict, sinks: AlertSinks | None = None):
    """One evaluation at FIXED_NOW, with resources built afresh as a restarted daemon would."""
    context = dg.build_sensor_context(
        instance=instance,
        resources={
            "workflow": SqlWorkflowService(url=stores["url"]),
            "alert_store": AlertStore(url=stores["url"]),
            "alert_sinks": sinks or AlertSinks(),
        },
    )
    return sensor_at_fixed_now(context)


def test_the_sensor_ticks_every_ten_minutes_and_is_on_by_default():
    assert long_running_tasks_sensor.minimum_interval_seconds == 600
    assert long_running_tasks_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert build_long_running_tasks_sensor(minimum_interval_seconds=120).minimum_interval_seconds == 120


def test_the_baselines_hold_the_hand_computed_limit(stores):
    as_of, limits = stores["alert_store"].latest_baselines()
    assert as_of == TODAY.to_pydatetime()
    assert limits.set_index("task_type").loc["etl.orders", "upper_limit_s"] == pytest.approx(ORDERS_LIMIT)


def check_of(result: dg.SensorResult) -> dg.AssetCheckEvaluation:
    """The tick's evaluation of the limits' check: what it found over the limit."""
    (check,) = [event for event in result.asset_events if isinstance(event, dg.AssetCheckEvaluation)]
    assert (check.asset_key, check.check_name) == (dg.AssetKey("task_duration_baselines"), OVER_LIMIT_CHECK)
    return check


def table_rows(check: dg.AssetCheckEvaluation) -> list[dict]:
    return [record.data for record in check.metadata["tasks"].value.records]


def test_a_tick_flags_exactly_the_tasks_over_their_limit(instance, stores):
    result = tick(instance, stores)
    assert isinstance(result, dg.SensorResult)
    # What the daemon's tick history shows for a tick that requests no run, the task named.
    assert result.skip_reason.skip_message == (
        "Alerted: 1 running tasks past their limit (4 running, 3 checked, 1 without baseline; limits as of "
        f"{TODAY:%Y-%m-%d}). Over their limit now: 'etl.orders' run r-stuck 1h 0m, limit 3m 26s."
    )
    check = check_of(result)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert (check.metadata["over_limit"].value, check.metadata["new_alerts"].value) == (1, 1)
    assert check.description.startswith("1 running tasks over their limit (4 running, 3 checked")
    assert table_rows(check) == [
        {"task_type": "etl.orders", "run_id": "r-stuck", "started_at": "2026-11-22 05:00 UTC",
         "elapsed": "1h 0m", "limit": "3m 26s", "mean": "2m 25s", "runs": 10}
    ]  # fmt: skip
    observation = result.asset_events[0]
    assert observation.metadata["new_alerts"].value == 1
    assert (observation.metadata["running"].value, observation.metadata["checked"].value) == (4, 3)
    assert observation.metadata["without_baseline"].value == 1
    alerts = stores["alert_store"].alerts()
    assert alerts["run_id"].tolist() == ["r-stuck"]
    assert alerts.loc[0, "upper_limit_s"] == pytest.approx(ORDERS_LIMIT)
    assert alerts.loc[0, "elapsed_s"] == pytest.approx(3600)


def test_a_second_tick_with_the_same_state_flags_nothing_and_still_names_the_task(instance, stores):
    tick(instance, stores)
    result = tick(instance, stores)
    assert result.skip_reason.skip_message == (
        "No new task over its limit (4 running, 3 checked, 1 without baseline, 1 still over their limit, "
        f"already alerted; limits as of {TODAY:%Y-%m-%d}). "
        "Over their limit now: 'etl.orders' run r-stuck 1h 0m, limit 3m 26s."
    )
    # No new alert, so no observation of one; the check still records the task over its limit.
    check = check_of(result)
    assert len(result.asset_events) == 1
    assert not check.passed
    assert (check.metadata["over_limit"].value, check.metadata["new_alerts"].value) == (1, 0)
    assert [row["run_id"] for row in table_rows(check)] == ["r-stuck"]
    assert len(stores["alert_store"].alerts()) == 1


def test_a_tick_names_the_first_three_tasks_over_their_limit_and_tabulates_them_all(instance, stores):
    stores["workflow"].write_runs(
        pd.DataFrame([running(f"r-stuck-{i}", "etl.orders", 3600 - 60 * i) for i in range(1, 6)])
    )
    result = tick(instance, stores)
    message = result.skip_reason.skip_message
    assert message.startswith("Alerted: 6 running tasks past their limit (9 running, 8 checked,")
    assert message.endswith(
        "Over their limit now: 'etl.orders' run r-stuck 1h 0m, limit 3m 26s; 'etl.orders' run r-stuck-1 "
        "59m 0s, limit 3m 26s; 'etl.orders' run r-stuck-2 58m 0s, limit 3m 26s; and 3 more."
    )
    check = check_of(result)
    assert check.metadata["over_limit"].value == 6
    assert [row["run_id"] for row in table_rows(check)] == ["r-stuck"] + [f"r-stuck-{i}" for i in range(1, 6)]


def test_each_checking_tick_is_recorded_on_the_instance_as_the_limits_check(instance, stores):
    """As the daemon does with a tick's asset events: the check's history holds one evaluation a tick,
    its count plotted over time; the asset graph shows the check's latest state."""
    for _ in range(2):
        for event in tick(instance, stores).asset_events:
            instance.report_runless_asset_event(event)
    key = dg.AssetCheckKey(dg.AssetKey("task_duration_baselines"), OVER_LIMIT_CHECK)
    history = instance.event_log_storage.get_asset_check_execution_history(key, limit=10)
    evaluations = [record.event.dagster_event.event_specific_data for record in history]
    assert [e.passed for e in evaluations] == [False, False]
    assert [e.metadata["over_limit"].value for e in evaluations] == [1, 1]
    assert [e.metadata["new_alerts"].value for e in evaluations] == [0, 1]  # newest first
    assert [row.data["run_id"] for row in evaluations[0].metadata["tasks"].value.records] == ["r-stuck"]


def test_task_types_and_run_ids_are_named_redacted_as_in_alerts(instance, stores):
    secret_run = "run-ghp_abcdefghijklmnopqrstuvwxyz0123456789"
    stores["workflow"].write_runs(pd.DataFrame([running(secret_run, "etl.orders", 4000)]))
    result = tick(instance, stores)
    assert "ghp_" not in result.skip_reason.skip_message
    assert "'etl.orders' run run-<github_token> 1h 6m" in result.skip_reason.skip_message
    check = check_of(result)
    assert "ghp_" not in check.description
    assert [row["run_id"] for row in table_rows(check)] == ["run-<github_token>", "r-stuck"]


def test_executing_the_check_itself_reports_the_tasks_over_their_limit_and_raises_no_alert(instance, stores):
    """What "Execute" on the check in the UI does: one check at the real time, long after the runs
    above started, so every task with a limit is over it."""
    result = dg.materialize(
        [task_duration_baselines, tasks_within_their_limit],
        instance=instance,
        resources={"workflow": stores["workflow"], "alert_store": stores["alert_store"]},
        selection=dg.AssetSelection.checks(tasks_within_their_limit),
    )
    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed
    assert evaluation.metadata["over_limit"].value == 3
    assert "new_alerts" not in evaluation.metadata
    assert evaluation.description.startswith("3 running tasks over their limit (4 running, 3 checked")
    assert stores["alert_store"].alerts().empty


def test_a_new_crossing_is_flagged_on_the_next_tick(instance, stores):
    tick(instance, stores)
    # Time passes for r-slow-fine: it has now run 5000 s, past etl.slow's limit of about 4055 s.
    make_overdue(stores["url"], "r-slow-fine", 5000)
    result = tick(instance, stores)
    assert result.asset_events[0].metadata["new_alerts"].value == 1
    assert stores["alert_store"].alerts()["run_id"].tolist() == ["r-stuck", "r-slow-fine"]


def test_nothing_over_its_limit_is_a_skip_with_the_counts(instance, stores):
    engine = sa.create_engine(stores["url"])
    with engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM task_runs WHERE run_id = 'r-stuck'"))
    engine.dispose()
    result = tick(instance, stores)
    counts = "3 running, 2 checked, 1 without baseline"
    assert result.skip_reason.skip_message == (
        f"No new task over its limit ({counts}; limits as of {TODAY:%Y-%m-%d})."
    )
    # Recorded all the same: the count the UI plots drops to 0 and the check passes.
    check = check_of(result)
    assert check.passed
    assert check.metadata["over_limit"].value == 0 and table_rows(check) == []
    assert (
        check.description == f"No running task is over its limit ({counts}; limits as of {TODAY:%Y-%m-%d})."
    )


def test_without_learned_limits_the_sensor_says_so(instance, tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    SqlWorkflowService(url=url).write_runs(pd.DataFrame([running("r1", "etl.orders", 10)]))
    result = tick(instance, {"url": url})
    assert isinstance(result, dg.SkipReason)
    assert "1 running, 0 checked, 1 without baseline; no limits learned yet" in result.skip_message


def test_a_failing_webhook_is_retried_and_gets_each_alert_exactly_once(instance, stores, recording_server):
    webhook = recording_server(failures=2)
    sinks = AlertSinks(webhook_url=webhook.url)
    for _ in range(4):
        tick(instance, stores, sinks)
    assert webhook.attempts == 3
    assert [request["body"]["run_id"] for request in webhook.received] == ["r-stuck"]
    payload = webhook.received[0]["body"]
    assert payload["task_type"] == "etl.orders"
    assert payload["upper_limit_s"] == pytest.approx(ORDERS_LIMIT)
    assert "past its limit of 3m 26s" in payload["text"]
    assert stores["alert_store"].undelivered("webhook").empty


@pytest.mark.parametrize("refusal", ["ok false", "HTTP 500"])
def test_slack_refusing_or_down_for_two_ticks_gets_the_alert_once_when_it_accepts(
    instance, stores, recording_server, refusal
):
    slack = recording_server(failures=2, slack=True, slack_http_error=refusal == "HTTP 500")
    sinks = AlertSinks(slack_token="xoxb-test", slack_channel="#ops", slack_api_url=slack.url)
    for _ in range(4):
        tick(instance, stores, sinks)
    assert slack.attempts == 3
    assert [request["path"] for request in slack.received] == ["/chat.postMessage"]
    message = slack.received[0]["body"]
    assert message["channel"] == "#ops"
    assert message["text"].startswith("Task 'etl.orders' (run r-stuck) has been running for 1h 0m")


@pytest.mark.parametrize("sink", ["slack", "webhook"])
def test_a_sink_that_times_out_for_ticks_gets_each_alert_exactly_once_when_it_recovers(
    instance, stores, recording_server, capfd, sink
):
    server = recording_server(slack=sink == "slack")
    settings = {"slack_token": "xoxb-test", "slack_api_url": server.url} if sink == "slack" else {}
    settings |= {"webhook_url": server.url if sink == "webhook" else None}
    # Under a second, as the Slack sink once truncated such a timeout to 0 (no wait at all). It is only
    # ever waited out against a sink that never answers; the sink back up is given all the time it
    # needs, so a loaded machine answering slowly cannot fail the test.
    hung_sinks = AlertSinks(**settings, timeout_seconds=0.8)
    sinks = AlertSinks(**settings, timeout_seconds=60)
    server.hang = True  # accepts the request and never answers
    tick(instance, stores, hung_sinks)  # raises r-stuck's alert
    make_overdue(stores["url"], "r-slow-fine", 5000)
    tick(instance, stores, hung_sinks)  # raises r-slow-fine's alert
    tick(instance, stores, hung_sinks)
    # Each tick gave up on the sink after its timeout, tried it once only, and said why. The server
    # has counted every request it holds before it answers again, so none of them is answered.
    assert until(lambda: server.hung >= 3) and server.hung == 3 and server.received == []
    log = capfd.readouterr().err
    assert log.count(f"Sink {sink} failed (alert 1: no answer within 0.8 s); its alerts are retried") == 3
    server.hang, server.failures = False, 1  # back, but refuses the first request (500 or ok false)
    for _ in range(3):
        tick(instance, stores, sinks)
    assert server.attempts == 3  # the refusal, then both alerts, then nothing left to send
    received = [request["body"].get("run_id") or request["body"]["text"] for request in server.received]
    assert len(received) == 2
    assert "r-stuck" in received[0] and "r-slow-fine" in received[1]
    store = stores["alert_store"]
    assert store.undelivered(sink).empty
    engine = sa.create_engine(stores["url"])
    with engine.connect() as connection:
        deliveries = connection.execute(
            sa.text("SELECT alert_id, outcome FROM alert_deliveries WHERE sink = :sink ORDER BY alert_id"),
            {"sink": sink},
        ).all()
    engine.dispose()
    assert [tuple(row) for row in deliveries] == [(1, "delivered"), (2, "delivered")]


def test_a_sink_timeout_must_be_positive_so_no_tick_can_wait_forever():
    with pytest.raises(ValueError, match="greater than 0"):
        AlertSinks(webhook_url="http://127.0.0.1:9/", timeout_seconds=0)


def test_a_sink_that_is_down_does_not_keep_the_others_from_delivering(instance, stores, recording_server):
    down, up = recording_server(failures=99), recording_server()
    sinks = AlertSinks(webhook_url=up.url, slack_token="xoxb-test", slack_api_url=down.url)
    tick(instance, stores, sinks)
    assert [request["body"]["run_id"] for request in up.received] == ["r-stuck"]
    assert stores["alert_store"].undelivered("slack")["run_id"].tolist() == ["r-stuck"]


def test_impossible_running_rows_are_counted_not_fatal(instance, stores):
    engine = sa.create_engine(stores["url"])
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO task_runs (run_id, task_type, started_at, ended_at, status) VALUES "
                "('no-start', 'etl.orders', NULL, NULL, 'running'), "
                "('not-a-time', 'etl.orders', 'yesterday-ish', NULL, 'running'), "
                "('future', 'etl.orders', '2999-01-01 00:00:00.000000', NULL, 'running')"
            )
        )
    engine.dispose()
    result = tick(instance, stores)
    assert result.asset_events[0].description.startswith(
        "1 running tasks past their limit (4 running, 3 checked, 1 without baseline, 3 unreadable;"
    )


def test_a_sink_switched_on_later_gets_recent_alerts_but_not_stale_ones(instance, stores, recording_server):
    tick(instance, stores)  # r-stuck alerted, no sink configured yet
    stale = pd.DataFrame(
        [("etl.orders", "r-old", pd.Timestamp("2026-01-01T00:00:00Z"), 9000.0, 200.0, 145.0, 10)],
        columns=["task_type", "run_id", "started_at", "elapsed_s", "upper_limit_s", "mean_s", "n_runs"],
    )
    stores["alert_store"].record_alerts(stale, raised_at=datetime(2026, 1, 1, 3, tzinfo=UTC))
    webhook = recording_server()
    tick(instance, stores, AlertSinks(webhook_url=webhook.url))
    assert [request["body"]["run_id"] for request in webhook.received] == ["r-stuck"]
    assert stores["alert_store"].undelivered("webhook").empty


def test_an_airflow_alert_reaches_the_webhook_and_slack_with_its_fields(instance, tmp_path, recording_server):
    """The airflow source's alert: each field apart in the JSON, one line each in Slack, where a run
    id holding Slack's markup pings no one."""
    url = f"sqlite:///{tmp_path / 'airflow.db'}"
    # The contract's table holding Airflow's ids as the preset joins them.
    workflow = AirflowTaskInstances(
        url=url, table="task_runs", task_type_columns=["task_type"], run_id_columns=["run_id"],
        started_at_column="started_at", ended_at_column="ended_at", status_column="status",
        airflow_base_url="https://af.example.com",
    )  # fmt: skip
    runs = [
        {**row, "task_type": f"shop/{row['task_type']}", "run_id": f"{row['run_id']}/-1/1"}
        for row in history()
    ] + [running("<!channel> & co/1/2", "shop/etl.orders", 3600)]
    SqlWorkflowService(url=url).write_runs(pd.DataFrame(runs))
    store = AlertStore(url=f"sqlite:///{tmp_path / 'faultline.db'}")
    dg.materialize(
        [task_duration_baselines], instance=instance, partition_key=YESTERDAY,
        resources={"workflow": workflow, "alert_store": store},
    )  # fmt: skip
    webhook, slack = recording_server(), recording_server(slack=True)
    sinks = AlertSinks(webhook_url=webhook.url, slack_token="xoxb-test", slack_api_url=slack.url)
    context = dg.build_sensor_context(
        instance=instance, resources={"workflow": workflow, "alert_store": store, "alert_sinks": sinks}
    )
    sensor_at_fixed_now(context)
    (payload,) = [request["body"] for request in webhook.received]
    run = "%3C%21channel%3E%20%26%20co"
    link = f"https://af.example.com/dags/shop/runs/{run}/tasks/etl.orders/mapped/1?try_number=2"
    fields = ("dag_id", "task_id", "dag_run_id", "map_index", "try_number", "link")
    assert {key: payload[key] for key in fields} == {
        "dag_id": "shop", "task_id": "etl.orders", "dag_run_id": "<!channel> & co", "map_index": 1,
        "try_number": 2, "link": link,
    }  # fmt: skip
    assert payload["text"].startswith(
        "Task 'etl.orders' of DAG 'shop' (run '<!channel> & co', map index 1, try 2) has been running for"
    )
    (message,) = [request["body"]["text"] for request in slack.received]
    assert message.startswith(
        "Task 'etl.orders' of DAG 'shop' (run '&lt;!channel&gt; &amp; co', map index 1, try 2) has been"
    )
    assert message.endswith(link.replace("&", "&amp;"))
    assert store.alerts()[["dag_id", "map_index", "try_number"]].values.tolist() == [["shop", 1, 2]]
