"""task_duration_baselines and duration_alert_backtest materialized over a workflow table."""

import math
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from conftest import FIXED_TODAY

from assets.task_durations import duration_alert_backtest, task_duration_baselines
from resources.alert_store import AlertStore
from resources.workflow import SqlWorkflowService

TODAY = pd.Timestamp(FIXED_TODAY)
YESTERDAY = (TODAY - pd.Timedelta(days=1)).strftime("%Y-%m-%d")


def finished(
    run_id: str, task_type: str, ended: pd.Timestamp, seconds: float, status: str = "success"
) -> dict:
    return {"run_id": run_id, "task_type": task_type, "status": status,
            "started_at": ended - pd.Timedelta(seconds=seconds), "ended_at": ended}  # fmt: skip


@pytest.fixture
def workflow(tmp_path: Path) -> SqlWorkflowService:
    ended = TODAY - pd.Timedelta(days=3)
    rows = [finished(f"a{i}", "etl.orders", ended, d) for i, d in enumerate([60, 120, 180, 240, 300])]
    rows += [finished("a-failed", "etl.orders", ended, 50_000, "failed")]
    rows += [finished(f"b{i}", "etl.rare", ended, 30) for i in range(4)]
    rows += [finished("old", "etl.orders", TODAY - pd.Timedelta(days=15), 9_999)]
    rows += [finished("bad", "etl.orders", ended, -5), finished("weird", "etl.orders", ended, 5, "zombie")]
    service = SqlWorkflowService(url=f"sqlite:///{tmp_path / 'workflow.db'}")
    service.write_runs(pd.DataFrame(rows))
    return service


def materialize_baselines(instance, workflow, tmp_path: Path, config: dict | None = None):
    alert_store = AlertStore(url=f"sqlite:///{tmp_path / 'alerts.db'}")
    result = dg.materialize(
        [task_duration_baselines],
        instance=instance,
        partition_key=YESTERDAY,
        resources={"workflow": workflow, "alert_store": alert_store},
        run_config={"ops": {"task_duration_baselines": {"config": config or {}}}},
    )
    return result, alert_store


def metadata_of(result, key: str) -> dict:
    event = next(e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(key))
    return {name: value.value for name, value in event.materialization.metadata.items()}


def test_the_default_limits_are_the_alert_budgets_from_the_databases_histogram(instance, workflow, tmp_path):
    # etl.orders: 60, 120, 180, 240, 300 s; a month of it expects under one alert even at its p90 (see
    # test_the_alert_budget_and_the_sensors_cadence_are_config), so the limit is the p90, 276 s.
    result, alert_store = materialize_baselines(instance, workflow, tmp_path)
    baselines = result.asset_value("task_duration_baselines").set_index("task_type")
    assert baselines.loc["etl.orders", "estimator"] == "alert_budget"
    assert baselines.loc["etl.orders", "upper_limit_s"] == pytest.approx(276)
    assert baselines.loc["etl.orders", "mean_s"] == pytest.approx(180)
    assert metadata_of(result, "task_duration_baselines")["k"] == 1.0
    assert alert_store.latest_baselines()[1]["estimator"].tolist() == ["alert_budget", "alert_budget"]


def test_baselines_are_the_seeds_mean_plus_two_std_over_two_weeks_of_successes(instance, workflow, tmp_path):
    result, alert_store = materialize_baselines(instance, workflow, tmp_path, {"estimator": "mean_std"})
    baselines = result.asset_value("task_duration_baselines").set_index("task_type")
    assert baselines.loc["etl.orders", "n_runs"] == 5
    assert baselines.loc["etl.orders", "mean_s"] == pytest.approx(180)
    assert baselines.loc["etl.orders", "std_s"] == pytest.approx(math.sqrt(9000))
    assert baselines.loc["etl.orders", "upper_limit_s"] == pytest.approx(180 + 2 * math.sqrt(9000))
    as_of, saved = alert_store.latest_baselines()
    assert as_of == TODAY.to_pydatetime()
    assert saved.set_index("task_type").loc["etl.orders", "upper_limit_s"] == pytest.approx(
        180 + 2 * math.sqrt(9000)
    )


def test_task_types_with_too_little_history_get_no_limit_and_are_reported(instance, workflow, tmp_path):
    result, _ = materialize_baselines(instance, workflow, tmp_path, {"estimator": "mean_std"})
    baselines = result.asset_value("task_duration_baselines").set_index("task_type")
    assert not baselines.loc["etl.rare", "has_limit"] and np.isnan(baselines.loc["etl.rare", "upper_limit_s"])
    metadata = metadata_of(result, "task_duration_baselines")
    assert metadata["task_types"] == 2
    assert metadata["with_limit"] == 1
    assert metadata["too_little_history"] == 1
    assert metadata["successful_runs"] == 9
    assert metadata["rejected_reasons"] == {"ended_at before started_at": 1, "unknown status": 1}
    assert "| etl.orders | 5 | 180.0 | 94.9 | 369.7 | True | mean\\_std |" in metadata["limits"]


def test_the_robust_estimator_is_selected_by_config(instance, workflow, tmp_path):
    result, alert_store = materialize_baselines(instance, workflow, tmp_path, {"estimator": "log_mad"})
    log_d = np.log([60, 120, 180, 240, 300])
    mad = np.median(np.abs(log_d - np.median(log_d)))
    expected = math.exp(np.median(log_d) + 2.5 * 1.4826 * mad)
    baselines = result.asset_value("task_duration_baselines").set_index("task_type")
    assert baselines.loc["etl.orders", "upper_limit_s"] == pytest.approx(expected)
    assert set(alert_store.latest_baselines()[1]["estimator"]) == {"log_mad"}


def test_the_alert_budget_and_the_sensors_cadence_are_config(instance, workflow, tmp_path):
    # etl.orders: 60, 120, 180, 240, 300 s in 14 days. Its p90 is 276 s; the one run above it
    # (20% of runs) exceeds it by 24 s, the tail's scale. Runs per month 5 / 14 * 30. Seen past the
    # limit at a 600-s cadence: (24 / 600) * (1 - e^-25); at 60 s: (24 / 60) * (1 - e^-2.5).
    def expected(budget: float, interval_s: float) -> float:
        seen = 24 / interval_s * -math.expm1(-interval_s / 24)
        return 276 + 24 * max(0.0, math.log(5 / 14 * 30 * 0.2 * seen / budget))

    for config in ({"false_alerts_per_month": 0.01}, {"false_alerts_per_month": 0.01, "check_interval_s": 60},
                   {"false_alerts_per_month": 1.0}):  # fmt: skip
        result, _ = materialize_baselines(
            instance, workflow, tmp_path, {"estimator": "alert_budget", **config}
        )
        limit = (
            result.asset_value("task_duration_baselines")
            .set_index("task_type")
            .loc["etl.orders", "upper_limit_s"]
        )
        assert limit == pytest.approx(
            expected(config["false_alerts_per_month"], config.get("check_interval_s", 600))
        )
    assert limit == pytest.approx(276)  # a month of this history expects under one alert even at the p90


def test_an_empty_history_gives_no_limits_and_no_error(instance, tmp_path):
    empty = SqlWorkflowService(url=f"sqlite:///{tmp_path / 'empty.db'}")
    empty.write_runs(pd.DataFrame(columns=["run_id", "task_type", "started_at", "ended_at", "status"]))
    result, alert_store = materialize_baselines(instance, empty, tmp_path)
    assert result.asset_value("task_duration_baselines").empty
    assert metadata_of(result, "task_duration_baselines")["task_types"] == 0


def hourly_runs(day: pd.Timestamp, seconds: float) -> list[dict]:
    """One run of etl.hourly every hour of `day`, starting at hh:05 and lasting `seconds`."""
    starts = pd.date_range(day, periods=24, freq="h") + pd.Timedelta(minutes=5)
    return [finished(f"{start:%Y%m%dT%H}", "etl.hourly", start + pd.Timedelta(seconds=seconds), seconds)
            for start in starts]  # fmt: skip


def test_the_backtest_asset_replays_the_configured_days_of_history(instance, tmp_path):
    """20-minute runs every hour of the three days before the end date; a two-day window leaves the
    last of them to replay, where mean_std's limit is 1201 s (std is 0: its floor of a second over the
    mean) and the other estimators' 1800 s (their floor of half the median over it). Each normal run
    ends at hh:25, by its limit: no alert. A quarter of the day's 24 runs (6) are slowed to an hour and
    6 hang: both still run at the tick after their limit (hh:30, or hh:40 past 1800 s), alerted 299 s
    (mean_std) or 300 s after crossing.
    The 40-minute runs of the day before the history and of the end date are not read: replayed,
    they would add task-days full of false alerts."""
    rows = hourly_runs(TODAY - pd.Timedelta(days=4), 2400) + hourly_runs(TODAY, 2400)
    for days_before in (3, 2, 1):
        rows += hourly_runs(TODAY - pd.Timedelta(days=days_before), 1200)
    workflow = SqlWorkflowService(url=f"sqlite:///{tmp_path / 'history.db'}")
    workflow.write_runs(pd.DataFrame(rows))
    config = {"end_date": f"{TODAY:%Y-%m-%d}", "history_days": 3, "window_days": 2,
              "injected_fraction": 0.25, "check_interval_s": 600}  # fmt: skip
    result = dg.materialize(
        [duration_alert_backtest],
        instance=instance,
        resources={"workflow": workflow},
        run_config={"ops": {"duration_alert_backtest": {"config": config}}},
    )
    table = result.asset_value("duration_alert_backtest").set_index("estimator")
    assert table["k"].to_dict() == {"mean_std": 2.0, "log_mad": 2.5, "quantile": 1.2, "alert_budget": 1.0}
    for estimator in table.index:
        row = table.loc[estimator]
        assert (row["n_task_days"], row["n_injected_slowdowns"], row["n_injected_hangs"]) == (1, 6, 6)
        assert row["false_alerts_per_task_type_per_day"] == 0
        assert row["slowdown_recall"] == row["slowdown_recall_over_interval"] == row["hang_recall"] == 1
        assert row["mean_detection_delay_s"] == pytest.approx(299 if estimator == "mean_std" else 300)
    metadata = metadata_of(result, "duration_alert_backtest")
    assert metadata["history_runs"] == 72
    assert metadata["mean_std_false_per_day"] == 0
    assert metadata["log_mad_slow_recall"] == metadata["log_mad_hang_recall"] == 1
    # Short keys, so the UI's metadata column shows them whole.
    assert max(len(key) for key in metadata) <= 22
    # The table as the UI shows it: one record per estimator, numbers rounded (the delay is 299.999991 s).
    records = [record.data for record in metadata["results"].records]
    assert [record["estimator"] for record in records] == ["mean_std", "log_mad", "quantile", "alert_budget"]
    assert [record["mean_detection_delay_s"] for record in records] == [299.0] + [300.0] * 3
    assert [record["n_task_days"] for record in records] == [1] * 4
    assert metadata["budget_false_per_day"] == 0


def test_the_backtest_metadata_rounds_its_figures(instance, tmp_path):
    """Three task types with 20-minute runs every hour for two days; on the replayed second day one run
    of one type lasts an hour: 1 false alert in 3 task-days, shown as 0.3333, not 0.333333333."""
    rows = []
    for task_type in ("etl.a", "etl.b", "etl.c"):
        for days_before in (2, 1):
            rows += [{**run, "run_id": f"{task_type}-{run['run_id']}", "task_type": task_type}
                     for run in hourly_runs(TODAY - pd.Timedelta(days=days_before), 1200)]  # fmt: skip
    noon = TODAY - pd.Timedelta(hours=12)
    long_run = next(row for row in rows if row["task_type"] == "etl.a" and row["started_at"] > noon)
    long_run["ended_at"] = long_run["started_at"] + pd.Timedelta(hours=1)
    workflow = SqlWorkflowService(url=f"sqlite:///{tmp_path / 'history.db'}")
    workflow.write_runs(pd.DataFrame(rows))
    config = {"end_date": f"{TODAY:%Y-%m-%d}", "history_days": 2, "window_days": 1,
              "injected_fraction": 0.0, "check_interval_s": 600}  # fmt: skip
    result = dg.materialize(
        [duration_alert_backtest],
        instance=instance,
        resources={"workflow": workflow},
        run_config={"ops": {"duration_alert_backtest": {"config": config}}},
    )
    table = result.asset_value("duration_alert_backtest").set_index("estimator")
    metadata = metadata_of(result, "duration_alert_backtest")
    for estimator in ("mean_std", "log_mad"):
        assert table.loc[estimator, "false_alerts_per_task_type_per_day"] == pytest.approx(1 / 3)
        assert metadata[f"{estimator}_false_per_day"] == 0.3333
