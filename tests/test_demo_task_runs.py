"""Specifications of the demo workflow history (faultline.demo_data.task_runs)."""

import pandas as pd
import pytest

from faultline.demo_data.task_runs import TASK_CATALOGUE, DemoTaskRuns, generate_task_runs
from faultline.durations import (
    DEFAULT_ESTIMATOR,
    Estimator,
    baselines_from_durations,
    find_overdue_tasks,
    screen_task_runs,
    trailing_durations,
)

NOW = pd.Timestamp("2024-06-01 12:00:00")


@pytest.fixture(scope="module")
def demo() -> DemoTaskRuns:
    return generate_task_runs(NOW)


def limits_at_now(runs: pd.DataFrame, estimator: Estimator = DEFAULT_ESTIMATOR) -> pd.DataFrame:
    valid, _ = screen_task_runs(runs, NOW)
    return baselines_from_durations(trailing_durations(valid, NOW, window_days=14), estimator)


def test_runs_follow_the_task_runs_contract_and_pass_screening(demo) -> None:
    runs = demo.runs

    valid, rejected = screen_task_runs(runs, NOW)

    assert list(runs.columns) == ["run_id", "task_type", "started_at", "ended_at", "status"]
    assert runs["run_id"].is_unique and all(isinstance(run_id, str) for run_id in runs["run_id"])
    assert set(runs["status"]) == {"success", "failed", "aborted", "running"}
    assert rejected.empty and len(valid) == len(runs)


def test_there_are_thirty_task_types_with_fourteen_days_of_history_before_now(demo) -> None:
    runs = demo.runs

    assert runs["task_type"].nunique() == 30
    assert runs["started_at"].min() <= NOW - pd.Timedelta(days=13, hours=12)
    assert runs["started_at"].max() <= NOW and runs["ended_at"].max() <= NOW
    assert runs.groupby("task_type").size().min() >= 14


def test_median_durations_spread_from_seconds_to_hours(demo) -> None:
    success = demo.runs[demo.runs["status"].eq("success")]
    medians = (
        (success["ended_at"] - success["started_at"])
        .dt.total_seconds()
        .groupby(success["task_type"])
        .median()
    )

    assert medians.min() < 30
    assert medians.max() > 1.5 * 3600


def test_about_three_percent_fail_some_very_long_and_one_percent_abort(demo) -> None:
    finished = demo.runs[demo.runs["status"].ne("running")]
    share = finished["status"].value_counts(normalize=True)
    limits = limits_at_now(demo.runs).set_index("task_type")["upper_limit_s"]
    failed = finished[finished["status"].eq("failed")]
    failed_s = (failed["ended_at"] - failed["started_at"]).dt.total_seconds()

    assert 0.02 < share["failed"] < 0.04
    assert 0.005 < share["aborted"] < 0.015
    assert (failed_s > 3 * failed["task_type"].map(limits)).sum() >= 20


def test_expected_overdue_runs_are_exactly_the_running_runs_past_the_default_limit(demo) -> None:
    running = demo.runs[demo.runs["status"].eq("running")]

    scan = find_overdue_tasks(running, limits_at_now(demo.runs), NOW)

    assert set(scan.overdue["run_id"]) == demo.expected_overdue_run_ids
    assert len(running) > len(demo.expected_overdue_run_ids), (
        "ordinary runs are in flight too, under their limit"
    )


def test_at_least_five_short_and_long_task_types_are_stuck_far_past_their_limit(demo) -> None:
    running = demo.runs[demo.runs["status"].eq("running")]
    scan = find_overdue_tasks(running, limits_at_now(demo.runs), NOW)
    medians = {name: median_s for name, median_s, _, _ in TASK_CATALOGUE}
    stuck_medians = scan.overdue["task_type"].map(medians)

    assert len(demo.expected_overdue_run_ids) >= 5
    assert stuck_medians.min() < 60 and stuck_medians.max() >= 3600
    assert (scan.overdue["elapsed_s"] >= 3 * scan.overdue["upper_limit_s"]).all()


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_other_seeds_and_longer_histories_keep_the_same_guarantees(seed: int) -> None:
    demo = generate_task_runs(NOW, days=21, n_task_types=32, seed=seed)
    running = demo.runs[demo.runs["status"].eq("running")]

    scan = find_overdue_tasks(running, limits_at_now(demo.runs), NOW)

    assert demo.runs["task_type"].nunique() == 32
    assert set(scan.overdue["run_id"]) == demo.expected_overdue_run_ids
    assert len(demo.expected_overdue_run_ids) >= 5


def test_generation_is_deterministic_for_a_seed(demo) -> None:
    again = generate_task_runs(NOW)
    other = generate_task_runs(NOW, seed=12)

    pd.testing.assert_frame_equal(again.runs, demo.runs)
    assert again.expected_overdue_run_ids == demo.expected_overdue_run_ids
    assert not other.runs.equals(demo.runs)


def successful_seconds(
    demo: DemoTaskRuns, task_type: str, since: pd.Timestamp | None = None, until: pd.Timestamp | None = None
) -> pd.Series:
    runs = demo.runs[demo.runs["task_type"].eq(task_type) & demo.runs["status"].eq("success")]
    if since is not None:
        runs = runs[runs["started_at"] >= since]
    if until is not None:
        runs = runs[runs["started_at"] < until]
    return (runs["ended_at"] - runs["started_at"]).dt.total_seconds()


def test_some_task_types_have_what_real_runtimes_have(demo) -> None:
    identical = successful_seconds(demo, "api.refresh_tokens")
    shifted = NOW - pd.Timedelta(days=3)
    before = successful_seconds(demo, "dbt.build_marts", until=shifted - pd.Timedelta(hours=1))
    after = successful_seconds(demo, "dbt.build_marts", since=shifted)
    two_modes = successful_seconds(demo, "ingest.clickstream_compaction")
    tail = successful_seconds(demo, "export.segment_sync")

    assert set(identical) == {1.0}
    assert after.median() > 2.5 * before.median()
    assert 0.2 < (two_modes > 2.5 * 9 * 60).mean() < 0.45  # the big-input mode, 4 x the 9-minute median
    assert tail.quantile(0.99) > 3.5 * tail.median()


def test_the_budgets_limit_follows_the_level_shift_and_leaves_room_over_identical_runs(demo) -> None:
    # alert_budget, one switch away (the seed's mean_std, the default, has neither rule).
    limits = limits_at_now(demo.runs, Estimator.ALERT_BUDGET).set_index("task_type")["upper_limit_s"]
    after = successful_seconds(demo, "dbt.build_marts", since=NOW - pd.Timedelta(days=3))

    assert limits["dbt.build_marts"] > after.quantile(0.9)
    assert limits["api.refresh_tokens"] == pytest.approx(2.0)  # 1 s + the 1-s floor of spread
