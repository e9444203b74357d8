"""task_duration_baselines and duration_alert_backtest materialized over a workflow table."""

import math
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from assets.task_durations import duration_alert_backtest, task_duration_baselines
from faultline.backtest import backtest
from faultline.demo_data.task_runs import generate_task_runs
from resources.alert_store import AlertStore
from resources.workflow import SqlWorkflowService

TODAY = pd.Timestamp.now(tz="UTC").floor("D")
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


def test_baselines_are_the_seeds_mean_plus_two_std_over_two_weeks_of_successes(instance, workflow, tmp_path):
    result, alert_store = materialize_baselines(instance, workflow, tmp_path)
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
    result, _ = materialize_baselines(instance, workflow, tmp_path)
    baselines = result.asset_value("task_duration_baselines").set_index("task_type")
    assert not baselines.loc["etl.rare", "has_limit"] and np.isnan(baselines.loc["etl.rare", "upper_limit_s"])
    metadata = metadata_of(result, "task_duration_baselines")
    assert metadata["task_types"] == 2
    assert metadata["task_types_with_limit"] == 1
    assert metadata["task_types_with_too_little_history"] == 1
    assert metadata["successful_runs"] == 9
    assert metadata["rejected_reasons"] == {"ended_at before started_at": 1, "unknown status": 1}
    assert "| etl.orders | 5 | 180.0 | 94.9 | 369.7 | True | mean_std |" in metadata["limits"]


def test_the_robust_estimator_is_selected_by_config(instance, workflow, tmp_path):
    result, alert_store = materialize_baselines(instance, workflow, tmp_path, {"estimator": "log_mad"})
    log_d = np.log([60, 120, 180, 240, 300])
    mad = np.median(np.abs(log_d - np.median(log_d)))
    expected = math.exp(np.median(log_d) + 2.5 * 1.4826 * mad)
    baselines = result.asset_value("task_duration_baselines").set_index("task_type")
    assert baselines.loc["etl.orders", "upper_limit_s"] == pytest.approx(expected)
    assert set(alert_store.latest_baselines()[1]["estimator"]) == {"log_mad"}


def test_an_empty_history_gives_no_limits_and_no_error(instance, tmp_path):
    empty = SqlWorkflowService(url=f"sqlite:///{tmp_path / 'empty.db'}")
    empty.write_runs(pd.DataFrame(columns=["run_id", "task_type", "started_at", "ended_at", "status"]))
    result, alert_store = materialize_baselines(instance, empty, tmp_path)
    assert result.asset_value("task_duration_baselines").empty
    assert metadata_of(result, "task_duration_baselines")["task_types"] == 0


def test_the_backtest_asset_reports_both_estimators_on_the_history(instance, tmp_path):
    now = TODAY + pd.Timedelta(hours=6)
    demo = generate_task_runs(now, days=28, n_task_types=8, seed=3)
    workflow = SqlWorkflowService(url=f"sqlite:///{tmp_path / 'history.db'}")
    workflow.write_runs(demo.runs)
    result = dg.materialize(
        [duration_alert_backtest],
        instance=instance,
        resources={"workflow": workflow},
        run_config={"ops": {"duration_alert_backtest": {"config": {"end_date": TODAY.strftime("%Y-%m-%d")}}}},
    )
    table = result.asset_value("duration_alert_backtest").set_index("estimator")
    history = workflow.successful_runs(TODAY - pd.Timedelta(days=28), TODAY)
    expected = backtest(history).set_index("estimator")
    pd.testing.assert_frame_equal(table, expected)
    assert set(table.index) == {"mean_std", "log_mad"}
    assert (table["hang_recall"] > 0.9).all()
    metadata = metadata_of(result, "duration_alert_backtest")
    assert metadata["mean_std_false_alerts_per_task_type_per_day"] == pytest.approx(
        table.loc["mean_std", "false_alerts_per_task_type_per_day"]
    )
