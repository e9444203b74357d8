"""Specifications of the replay at the sensor's cadence and the estimator backtest (faultline.backtest)."""

import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from faultline.backtest import backtest, replay_alerts
from faultline.durations import screen_task_runs
from resources.workflow import SqlWorkflowService


def one_run(started: str, ended: str | None) -> pd.DataFrame:
    return pd.DataFrame({"started_at": [pd.Timestamp(started)], "ended_at": [pd.Timestamp(ended)]})


def first_alert(
    started: str, ended: str | None, limit_s: float, interval_s: float = 600, offset_s: float = 0
):
    return replay_alerts(one_run(started, ended), [limit_s], interval_s, offset_s).iat[0]


def test_a_five_minute_run_between_two_ten_minute_ticks_is_never_checked() -> None:
    # Ticks at 10:00 and 10:10; the run lives from 10:02 to 10:07, far past its 60 s limit.
    assert pd.isna(first_alert("2024-03-15 10:02", "2024-03-15 10:07", limit_s=60))


def test_a_25_minute_run_over_a_12_minute_limit_alerts_at_the_first_tick_past_the_limit() -> None:
    # Starts 10:02, crosses its limit at 10:14; the 10:10 tick sees 8 minutes, the 10:20 tick 18.
    assert first_alert("2024-03-15 10:02", "2024-03-15 10:27", limit_s=720) == pd.Timestamp(
        "2024-03-15 10:20"
    )


def test_a_run_exactly_at_its_limit_on_a_tick_is_not_yet_over() -> None:
    assert first_alert("2024-03-15 10:00", "2024-03-15 11:00", limit_s=600) == pd.Timestamp(
        "2024-03-15 10:20"
    )


def test_a_run_that_ends_before_the_first_tick_past_its_limit_is_not_flagged() -> None:
    # Crosses its limit at 10:14 but ends at 10:19, before the 10:20 tick.
    assert pd.isna(first_alert("2024-03-15 10:02", "2024-03-15 10:19", limit_s=720))


def test_the_tick_offset_shifts_every_tick() -> None:
    # Ticks at 10:05, 10:15, ...: the 10:14 crossing is seen at 10:15.
    alert = first_alert("2024-03-15 10:02", "2024-03-15 10:27", limit_s=720, offset_s=300)

    assert alert == pd.Timestamp("2024-03-15 10:15")


def test_a_run_without_a_limit_never_alerts_and_one_without_an_end_runs_on() -> None:
    runs = pd.DataFrame(
        {
            "started_at": pd.to_datetime(["2024-03-15 10:02", "2024-03-15 10:02"]),
            "ended_at": pd.to_datetime([None, None]),
        }
    )

    alerts = replay_alerts(runs, [np.nan, 7200.0], 600)

    assert pd.isna(alerts.iat[0])
    assert alerts.iat[1] == pd.Timestamp("2024-03-15 12:10")


def test_limits_must_line_up_with_the_runs() -> None:
    with pytest.raises(ValueError, match="limits has 2 values for 1 runs"):
        replay_alerts(one_run("2024-03-15 10:00", None), [1.0, 2.0], 600)


def hourly_history(days: int, duration_s: float, minute: int = 5) -> pd.DataFrame:
    """One task type starting at hh:`minute` every hour for `days` days, each run `duration_s` long."""
    starts = pd.date_range("2024-03-01", periods=24 * days, freq="h") + pd.Timedelta(minutes=minute)
    runs = pd.DataFrame(
        {
            "run_id": [f"r{i}" for i in range(len(starts))],
            "task_type": "etl.hourly",
            "started_at": starts,
            "ended_at": starts + pd.Timedelta(seconds=duration_s),
            "status": "success",
        }
    )
    valid, _ = screen_task_runs(runs, starts[-1] + pd.Timedelta(days=1))
    return valid


def test_perfectly_regular_runs_give_no_false_alerts_and_catch_every_slowdown_and_hang() -> None:
    # Three days of 20-minute runs at hh:05; a two-day window leaves one day to replay, with the
    # limit at 1201 s for mean_std (std is 0: its floor of a second over the mean) and 1800 s for
    # log_mad (MAD is 0: its floor of half the median). Each normal run ends at hh:25, by its limit:
    # no alert. A quarter of the 24 runs (6) are slowed to 60 minutes and 6 hang; both are still
    # running at the next tick (hh:30, or hh:40 past 1800 s): alerted 299 s or 300 s after the crossing.
    result = backtest(
        hourly_history(days=3, duration_s=1200),
        window_days=2,
        injected_fraction=0.25,
        check_interval_s=600,
    ).set_index("estimator")

    for estimator in ("mean_std", "log_mad"):
        row = result.loc[estimator]
        assert row["false_alerts_per_task_type_per_day"] == 0
        assert row["slowdown_recall"] == 1
        assert row["slowdown_recall_over_interval"] == 1
        assert row["hang_recall"] == 1
        assert row["mean_detection_delay_s"] == pytest.approx(299 if estimator == "mean_std" else 300)
        assert (row["n_task_days"], row["n_injected_slowdowns"], row["n_injected_hangs"]) == (1, 6, 6)
    assert result.loc["mean_std", "k"] == 2.0
    assert result.loc["log_mad", "k"] == 2.5


def test_an_ordinary_run_over_its_limit_is_a_false_alert() -> None:
    # The replayed day's 07:05 run takes 40 minutes against a 20-minute limit fitted on the window:
    # it crosses at 07:25 and is still running at the 07:30 tick. One alert on one task-day.
    history = hourly_history(days=3, duration_s=1200)
    slow = history["started_at"].eq(pd.Timestamp("2024-03-03 07:05"))
    history.loc[slow, "ended_at"] += pd.Timedelta(minutes=20)
    history.loc[slow, "duration_s"] = 2400

    row = backtest(history, [("mean_std", 2.0)], window_days=2, injected_fraction=0).iloc[0]

    assert row["false_alerts_per_task_type_per_day"] == 1
    assert row["n_injected_slowdowns"] == row["n_injected_hangs"] == 0
    assert math.isnan(row["slowdown_recall"])
    assert math.isnan(row["mean_detection_delay_s"])


def test_slowdowns_of_tasks_shorter_than_the_interval_go_unseen_as_the_seed_argues() -> None:
    # One-minute runs at hh:01, slowed three times, cross their 61 s limit (mean_std's floor, a second
    # over identical durations) at hh:02:01 and end at hh:04, between the hh:00 and hh:10 ticks.
    # Hangs are still seen, at hh:10: 479 s after the crossing.
    result = backtest(
        hourly_history(days=3, duration_s=60, minute=1),
        [("mean_std", 2.0)],
        window_days=2,
        injected_fraction=0.25,
    ).iloc[0]

    assert result["slowdown_recall"] == 0
    assert math.isnan(result["slowdown_recall_over_interval"])
    assert result["hang_recall"] == 1
    assert result["mean_detection_delay_s"] == pytest.approx(479)


def test_failed_runs_are_not_replayed_and_do_not_count_toward_the_limit() -> None:
    # Two runs failed after 10 h 20 min, one in the window and one on the replayed day. Counted in
    # the window, the first would lift the limit past 3 h and hide the 60-minute slowdowns;
    # replayed, the second would be a false alert.
    history = hourly_history(days=3, duration_s=1200)
    failed = history["started_at"].isin(pd.to_datetime(["2024-03-02 07:05", "2024-03-03 07:05"]))
    history.loc[failed, "status"] = "failed"
    history.loc[failed, "ended_at"] += pd.Timedelta(hours=10)
    history.loc[failed, "duration_s"] += 36000

    row = backtest(history, [("mean_std", 2.0)], window_days=2, injected_fraction=0.25).iloc[0]

    assert row["false_alerts_per_task_type_per_day"] == 0
    assert row["slowdown_recall"] == 1
    assert row["n_task_days"] == 1


def test_the_injections_are_the_same_for_a_given_seed() -> None:
    history = hourly_history(days=4, duration_s=1200)

    first = backtest(history, window_days=2, injected_fraction=0.1, seed=3)
    again = backtest(history, window_days=2, injected_fraction=0.1, seed=3)

    pd.testing.assert_frame_equal(first, again)


def test_history_too_short_for_the_window_replays_nothing() -> None:
    row = backtest(hourly_history(days=2, duration_s=1200), [("log_mad", 2.5)], window_days=14).iloc[0]

    assert row["n_task_days"] == 0
    assert math.isnan(row["false_alerts_per_task_type_per_day"])


def varied_history(days: int = 5) -> pd.DataFrame:
    """Two task types, hourly, with durations that differ run to run (so which runs are injected matters)."""
    rng = np.random.default_rng(7)
    frames = []
    for task_type, median_s in (("etl.hourly", 1200), ("etl.quick", 240)):
        starts = pd.date_range("2024-03-01", periods=24 * days, freq="h") + pd.Timedelta(minutes=5)
        seconds = np.round(median_s * np.exp(0.4 * rng.standard_normal(len(starts))))
        frames.append(
            pd.DataFrame(
                {
                    "run_id": [f"{task_type}-{i}" for i in range(len(starts))],
                    "task_type": task_type,
                    "started_at": starts,
                    "ended_at": starts + pd.to_timedelta(seconds, unit="s"),
                    "status": "success",
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def test_the_figures_do_not_depend_on_the_order_the_database_returns_the_runs(store_url: str) -> None:
    # The same runs inserted into two tables in two shuffled orders, read back as the asset reads them.
    runs = varied_history()
    workflows = [SqlWorkflowService(url=store_url, table=name) for name in ("runs_a", "runs_b")]
    for workflow, order_seed in zip(workflows, (1, 2), strict=True):
        workflow.write_runs(runs.sample(frac=1, random_state=order_seed))
    start, end = datetime(2024, 2, 28, tzinfo=UTC), datetime(2024, 3, 7, tzinfo=UTC)
    histories = [workflow.successful_runs(start, end) for workflow in workflows]
    assert not histories[0]["run_id"].equals(histories[1]["run_id"])  # they did come back in other orders

    figures = [backtest(history, window_days=2, injected_fraction=0.2, seed=5) for history in histories]

    pd.testing.assert_frame_equal(figures[0], figures[1])
    again_reversed = backtest(histories[0].iloc[::-1], window_days=2, injected_fraction=0.2, seed=5)
    pd.testing.assert_frame_equal(figures[0], again_reversed)


def test_another_seed_injects_other_runs() -> None:
    history, _ = screen_task_runs(varied_history(), pd.Timestamp("2024-03-07"))

    first = backtest(history, window_days=2, injected_fraction=0.2, seed=5)
    other = backtest(history, window_days=2, injected_fraction=0.2, seed=6)

    assert not first.equals(other)
    assert (first["n_injected_slowdowns"] == other["n_injected_slowdowns"]).all()
