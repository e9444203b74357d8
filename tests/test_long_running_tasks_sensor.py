"""The long_running_tasks sensor: one alert per overdue run, kept across ticks and restarts, sinks retried."""

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import FIXED_NOW, FIXED_TODAY, fixed_clock, until

from assets.task_durations import task_duration_baselines
from dagster_project.sensors import build_long_running_tasks_sensor, long_running_tasks_sensor
from resources.alert_sinks import AlertSinks
from resources.alert_store import AlertStore
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


def test_a_tick_flags_exactly_the_tasks_over_their_limit(instance, stores):
    result = tick(instance, stores)
    assert isinstance(result, dg.SensorResult)
    # What the daemon's tick history shows for a tick that requests no run.
    assert result.skip_reason.skip_message.startswith(
        "Alerted: 1 running tasks past their limit (4 running, 3 checked, 1 without baseline;"
    )
    observation = result.asset_events[0]
    assert observation.metadata["new_alerts"].value == 1
    assert (observation.metadata["running"].value, observation.metadata["checked"].value) == (4, 3)
    assert observation.metadata["without_baseline"].value == 1
    alerts = stores["alert_store"].alerts()
    assert alerts["run_id"].tolist() == ["r-stuck"]
    assert alerts.loc[0, "upper_limit_s"] == pytest.approx(ORDERS_LIMIT)
    assert alerts.loc[0, "elapsed_s"] == pytest.approx(3600)


def test_a_second_tick_with_the_same_state_flags_nothing(instance, stores):
    tick(instance, stores)
    result = tick(instance, stores)
    assert isinstance(result, dg.SkipReason)
    assert (
        "4 running, 3 checked, 1 without baseline, 1 still over their limit, already alerted"
        in result.skip_message
    )
    assert len(stores["alert_store"].alerts()) == 1


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
    assert isinstance(result, dg.SkipReason)
    counts = "3 running, 2 checked, 1 without baseline"
    assert result.skip_message == f"No new task over its limit ({counts}; limits as of {TODAY:%Y-%m-%d})."


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
