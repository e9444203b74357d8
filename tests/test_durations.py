"""Specifications of the duration baselines and the overdue check (faultline.durations)."""

import math

import numpy as np
import pandas as pd
import pytest

from faultline.durations import (
    SAMPLE_POINTS,
    Estimator,
    baselines_from_durations,
    baselines_from_histogram,
    baselines_from_moments,
    duration_histogram,
    find_overdue_tasks,
    screen_task_runs,
    trailing_durations,
)

NOW = pd.Timestamp("2024-03-15 12:00:00")


def runs_frame(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["run_id", "task_type", "started_at", "ended_at", "status"])


def finished(run_id: str, task_type: str, started: str, duration_s: float, status: str = "success") -> tuple:
    start = pd.Timestamp(started)
    return (run_id, task_type, start, start + pd.Timedelta(seconds=duration_s), status)


def durations_frame(task_type: str, seconds: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"task_type": task_type, "duration_s": seconds})


# Five runs of 540, 540, 600, 660 and 660 s: mean 600; squared deviations 3600 * 4 = 14400;
# sample variance 14400 / (5 - 1) = 3600, std 60; upper limit 600 + 2 * 60 = 720.
FIVE_RUNS_S = [540, 540, 600, 660, 660]


def test_baseline_is_mean_plus_two_sample_standard_deviations() -> None:
    baselines = baselines_from_durations(durations_frame("dbt.build_marts", FIVE_RUNS_S))

    row = baselines.iloc[0]
    assert list(baselines.columns) == [
        "task_type",
        "n_runs",
        "mean_s",
        "std_s",
        "upper_limit_s",
        "has_limit",
        "estimator",
    ]
    assert (row["task_type"], row["n_runs"], row["estimator"]) == ("dbt.build_marts", 5, "mean_std")
    assert row["mean_s"] == pytest.approx(600)
    assert row["std_s"] == pytest.approx(60)
    assert row["upper_limit_s"] == pytest.approx(720)
    assert bool(row["has_limit"])


def test_k_sets_how_many_standard_deviations_the_limit_allows() -> None:
    baselines = baselines_from_durations(durations_frame("a", FIVE_RUNS_S), k=3)

    assert baselines["upper_limit_s"].iat[0] == pytest.approx(600 + 3 * 60)


def test_failed_and_aborted_runs_do_not_count_toward_the_baseline() -> None:
    rows = [finished(f"ok-{i}", "ingest.orders", f"2024-03-14 0{i}:00", d) for i, d in enumerate(FIVE_RUNS_S)]
    rows += [
        finished("timeout", "ingest.orders", "2024-03-14 06:00", 5000, "failed"),
        finished("killed", "ingest.orders", "2024-03-14 08:00", 9000, "aborted"),
    ]
    valid, rejected = screen_task_runs(runs_frame(rows), NOW)

    baselines = baselines_from_durations(trailing_durations(valid, NOW))

    assert rejected.empty
    assert baselines["n_runs"].iat[0] == 5
    assert baselines["mean_s"].iat[0] == pytest.approx(600)
    assert baselines["upper_limit_s"].iat[0] == pytest.approx(720)


def test_the_window_holds_the_successful_runs_that_ended_in_the_fourteen_days_before_its_end() -> None:
    window_start = NOW - pd.Timedelta(days=14)
    second = pd.Timedelta(seconds=1)

    def ending_at(end: pd.Timestamp, duration_s: int, status: str = "success") -> tuple:
        return (f"{duration_s}s", "t", end - duration_s * second, end, status)

    rows = [
        ending_at(window_start, 10),
        ending_at(window_start - second, 20),
        ending_at(NOW - second, 30),
        ending_at(NOW, 40),
        ending_at(NOW - second, 50, "failed"),
        ("running", "t", NOW - 60 * second, pd.NaT, "running"),
    ]
    valid, rejected = screen_task_runs(runs_frame(rows), NOW)

    window = trailing_durations(valid, NOW, window_days=14)

    assert rejected.empty
    assert sorted(window["duration_s"]) == [10, 30]


def test_too_little_history_sets_no_limit() -> None:
    baselines = baselines_from_durations(durations_frame("spark.rare_job", FIVE_RUNS_S[:4]), min_runs=5)

    row = baselines.iloc[0]
    assert row["n_runs"] == 4
    assert not row["has_limit"]
    assert math.isnan(row["upper_limit_s"])
    assert row["mean_s"] == pytest.approx(585)


def test_an_empty_history_gives_no_baselines() -> None:
    for estimator in Estimator:
        baselines = baselines_from_durations(durations_frame("t", []), estimator)
        assert baselines.empty
        assert "upper_limit_s" in baselines.columns


def test_sql_moments_give_the_same_baseline_as_the_durations() -> None:
    # COUNT = 5, AVG(d) = 600, AVG(d * d) = (2 * 540^2 + 600^2 + 2 * 660^2) / 5 = 362880.
    moments = pd.DataFrame({"task_type": ["a"], "n_runs": [5], "mean_s": [600.0], "mean_sq_s": [362880.0]})

    baselines = baselines_from_moments(moments)

    expected = baselines_from_durations(durations_frame("a", FIVE_RUNS_S))
    pd.testing.assert_frame_equal(baselines, expected)


def test_moments_below_the_minimum_history_set_no_limit() -> None:
    moments = pd.DataFrame({"task_type": ["a"], "n_runs": [4], "mean_s": [585.0], "mean_sq_s": [344475.0]})

    row = baselines_from_moments(moments, min_runs=5).iloc[0]

    assert not row["has_limit"]
    assert math.isnan(row["upper_limit_s"])


def test_a_one_pass_variance_that_rounds_below_zero_counts_as_zero() -> None:
    mean = 7200.1
    moments = pd.DataFrame(
        {
            "task_type": ["spark.identity_resolution"],
            "n_runs": [20],
            "mean_s": [mean],
            "mean_sq_s": [mean**2 - 1e-6],
        }
    )

    row = baselines_from_moments(moments).iloc[0]

    assert row["std_s"] == 0
    assert row["upper_limit_s"] == pytest.approx(mean + 1)  # mean_std's floor, a second over the mean


def test_log_mad_is_not_stretched_by_one_very_slow_run() -> None:
    # log durations: ln 50, ln 100, ln 100, ln 200, ln 10000; median ln 100; absolute deviations
    # ln 2, 0, 0, ln 2, ln 100; their median (the MAD) is ln 2. Limit: 100 * 2 ** (k * 1.4826).
    durations = durations_frame("export.crm_upsert", [50, 100, 100, 200, 10000])

    default = baselines_from_durations(durations, "log_mad").iloc[0]
    k_one = baselines_from_durations(durations, "log_mad", k=1.0).iloc[0]
    mean_std = baselines_from_durations(durations, "mean_std").iloc[0]

    assert default["estimator"] == "log_mad"
    assert default["upper_limit_s"] == pytest.approx(100 * 2 ** (2.5 * 1.4826))
    assert k_one["upper_limit_s"] == pytest.approx(100 * 2**1.4826)
    assert default["upper_limit_s"] < 1400 < mean_std["upper_limit_s"]


def test_an_unknown_estimator_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown estimator 'p99'; choose one of mean_std, log_mad"):
        baselines_from_durations(durations_frame("a", FIVE_RUNS_S), "p99")


def test_durations_that_are_not_positive_are_refused_with_a_pointer_to_screening() -> None:
    with pytest.raises(ValueError, match="screen_task_runs"):
        baselines_from_durations(durations_frame("a", [0.0, 10.0]))


def test_each_bad_run_is_rejected_with_its_reason_and_none_raises() -> None:
    t0 = pd.Timestamp("2024-03-15 10:00")
    later = t0 + pd.Timedelta(minutes=5)
    rows = [
        ("good", "t", t0, later, "success"),
        ("good-running", "t", t0, pd.NaT, "running"),
        ("odd-status", "t", t0, later, "skipped"),
        ("no-start", "t", pd.NaT, later, "success"),
        ("no-end", "t", t0, pd.NaT, "failed"),
        ("backwards", "t", later, t0, "success"),
        ("instant", "t", t0, t0, "aborted"),
        ("running-but-ended", "t", t0, later, "running"),
        ("from-the-future", "t", NOW + pd.Timedelta(hours=1), pd.NaT, "running"),
        ("no-task-type", None, t0, later, "success"),
        (None, "t", t0, later, "success"),
        ("no-status", "t", t0, later, None),
    ]

    valid, rejected = screen_task_runs(runs_frame(rows), NOW)

    assert list(valid["run_id"]) == ["good", "good-running"]
    assert list(rejected.columns) == ["run_id", "task_type", "reason"]
    assert dict(zip(rejected["run_id"].fillna("<none>"), rejected["reason"], strict=True)) == {
        "odd-status": "unknown status",
        "no-start": "missing started_at",
        "no-end": "finished run without ended_at",
        "backwards": "ended_at before started_at",
        "instant": "zero duration",
        "running-but-ended": "running run with ended_at set",
        "from-the-future": "started in the future",
        "no-task-type": "missing task_type",
        "<none>": "missing run_id",
        "no-status": "missing status",
    }


def test_valid_runs_get_their_duration_in_seconds_and_running_ones_none() -> None:
    rows = [
        finished("done", "t", "2024-03-15 10:00", 90.5),
        ("busy", "t", "2024-03-15 11:00", None, "running"),
    ]

    valid, _ = screen_task_runs(runs_frame(rows), NOW)

    assert valid["duration_s"].iat[0] == 90.5
    assert math.isnan(valid["duration_s"].iat[1])


def test_timestamps_as_text_or_with_a_time_zone_are_read_as_utc() -> None:
    rows = [
        ("text", "t", "2024-03-15 10:00:00", "2024-03-15 10:01:00", "success"),
        ("aware", "t", "2024-03-15T12:00:00+02:00", "2024-03-15T12:02:00+02:00", "success"),
        ("garbled", "t", "yesterday-ish", "2024-03-15 10:01:00", "success"),
    ]

    valid, rejected = screen_task_runs(runs_frame(rows), NOW)

    assert list(valid["started_at"]) == [pd.Timestamp("2024-03-15 10:00"), pd.Timestamp("2024-03-15 10:00")]
    assert list(valid["duration_s"]) == [60.0, 120.0]
    assert list(rejected["reason"]) == ["unparseable started_at"]


def test_task_types_with_quotes_sql_and_newlines_stay_data() -> None:
    odd = 'x\'; DROP TABLE task_runs; --\n"quoted"'
    rows = [finished(f"r{i}", odd, "2024-03-14 10:00", d) for i, d in enumerate(FIVE_RUNS_S)]

    valid, rejected = screen_task_runs(runs_frame(rows), NOW)
    baselines = baselines_from_durations(trailing_durations(valid, NOW))

    assert rejected.empty
    assert list(baselines["task_type"]) == [odd]
    assert baselines["upper_limit_s"].iat[0] == pytest.approx(720)


def test_a_missing_column_is_a_clear_error_naming_it() -> None:
    runs = runs_frame([finished("r", "t", "2024-03-15 10:00", 60)]).drop(columns="ended_at")

    with pytest.raises(ValueError, match="task runs has no column 'ended_at'"):
        screen_task_runs(runs, NOW)


BASELINES = pd.DataFrame(
    {
        "task_type": ["dbt.build_marts", "spark.rare_job"],
        "n_runs": [5, 3],
        "mean_s": [600.0, 100.0],
        "std_s": [60.0, 10.0],
        "upper_limit_s": [720.0, np.nan],
        "has_limit": [True, False],
        "estimator": "mean_std",
    }
)


def test_only_running_tasks_strictly_past_their_limit_are_overdue() -> None:
    running = pd.DataFrame(
        {
            "run_id": ["over", "exactly-at-limit", "under", "too-little-history", "never-seen"],
            "task_type": [
                "dbt.build_marts",
                "dbt.build_marts",
                "dbt.build_marts",
                "spark.rare_job",
                "new.task",
            ],
            "started_at": NOW - pd.to_timedelta([721, 720, 300, 99999, 99999], unit="s"),
        }
    )

    scan = find_overdue_tasks(running, BASELINES, NOW)

    assert scan.overdue.to_dict("records") == [
        {
            "run_id": "over",
            "task_type": "dbt.build_marts",
            "started_at": NOW - pd.Timedelta(seconds=721),
            "elapsed_s": 721.0,
            "upper_limit_s": 720.0,
            "mean_s": 600.0,
            "n_runs": 5,
        }
    ]
    assert (scan.n_running, scan.n_checked, scan.n_without_baseline) == (5, 3, 2)


def test_elapsed_time_is_measured_in_utc_whatever_the_time_zones() -> None:
    # 13:48:59 at +02:00 is 11:48:59 UTC: 661 s before NOW, under the 720 s limit; 11:47:59 UTC is over.
    running = pd.DataFrame(
        {
            "run_id": ["under", "over"],
            "task_type": "dbt.build_marts",
            "started_at": pd.to_datetime(["2024-03-15T13:48:59+02:00", "2024-03-15T13:47:59+02:00"]),
        }
    )

    scan = find_overdue_tasks(running, BASELINES, NOW.tz_localize("UTC"))

    assert list(scan.overdue["run_id"]) == ["over"]
    assert list(scan.overdue["elapsed_s"]) == [721.0]


def test_no_running_tasks_and_no_baselines_find_nothing() -> None:
    running = pd.DataFrame({"run_id": ["r"], "task_type": ["t"], "started_at": [NOW - pd.Timedelta(days=1)]})
    no_baselines = baselines_from_durations(durations_frame("t", []))

    scan = find_overdue_tasks(running, no_baselines, NOW)
    idle = find_overdue_tasks(running.iloc[:0], BASELINES, NOW)

    assert scan.overdue.empty and (scan.n_running, scan.n_checked, scan.n_without_baseline) == (1, 0, 1)
    assert idle.overdue.empty and (idle.n_running, idle.n_checked, idle.n_without_baseline) == (0, 0, 0)


def test_a_start_beyond_what_nanoseconds_hold_is_rejected_not_fatal():
    runs = pd.DataFrame(
        {"run_id": ["r1"], "task_type": ["t"], "started_at": ["2999-01-01 00:00:00"], "ended_at": [None],
         "status": ["running"]}
    )  # fmt: skip
    valid, rejected = screen_task_runs(runs, pd.Timestamp("2026-11-22T00:00:00Z"))
    assert valid.empty
    assert rejected["reason"].tolist() == ["unparseable started_at"]


def limit_of(durations: pd.DataFrame, estimator: str, **kwargs) -> float:
    return float(baselines_from_durations(durations, estimator, **kwargs)["upper_limit_s"].iat[0])


def test_quantile_is_a_margin_over_the_windows_99th_percentile() -> None:
    # 1, 2, ..., 100 s: the 99th percentile interpolates to 99.01 s; 1.2 * 99.01 = 118.812.
    durations = durations_frame("dbt.build_marts", list(range(1, 101)))

    assert limit_of(durations, "quantile") == pytest.approx(118.812)
    assert limit_of(durations, "quantile", k=1.0) == pytest.approx(99.01)


def test_identical_sub_second_runs_get_a_limit_a_second_above_them_not_at_them() -> None:
    # 20 runs of exactly 0.05 s: no spread at all, so MAD and the percentiles all sit at 0.05 s and
    # every run a hair slower would be past the limit. The floor: median + max(0.5 * median, 1 s).
    durations = durations_frame("cycles.output_parser", [0.05] * 20)

    for estimator in ("log_mad", "quantile", "alert_budget"):
        assert limit_of(durations, estimator) == pytest.approx(1.05), estimator


def test_mean_std_keeps_its_limit_a_second_above_identical_durations() -> None:
    # std 0: the seed's mean + 2 std would be the mean itself, and every run a hair slower past it.
    # mean_std's floor is a second over the mean, from the durations and from SQL moments alike; a
    # window with any spread keeps the seed's limit (FIVE_RUNS_S: 600 + 2 * 60).
    for seconds, limit in (([0.05] * 20, 1.05), ([1200.0] * 20, 1201.0), ([10.0, 10.2] * 10, 11.1)):
        durations = durations_frame("cycles.output_parser", seconds)
        moments = pd.DataFrame(
            {
                "task_type": ["cycles.output_parser"],
                "n_runs": [len(seconds)],
                "mean_s": [np.mean(seconds)],
                "mean_sq_s": [np.mean(np.square(seconds))],
            }  # fmt: skip
        )
        assert limit_of(durations, "mean_std") == pytest.approx(limit), seconds
        assert baselines_from_moments(moments)["upper_limit_s"].iat[0] == pytest.approx(limit), seconds
    assert limit_of(durations_frame("dbt.build_marts", FIVE_RUNS_S), "mean_std") == pytest.approx(720)


def test_identical_long_runs_leave_half_their_duration_of_room() -> None:
    durations = durations_frame("spark.merge_profiles", [1200.0] * 20)

    assert limit_of(durations, "log_mad") == pytest.approx(1800)
    assert limit_of(durations, "quantile") == pytest.approx(1800)


def shifted_window(recent_s: list[float]) -> pd.DataFrame:
    """Twelve days of two 100-second runs a day, then the last two days' runs of `recent_s`."""
    end = pd.Timestamp("2024-03-15")
    old = [(end - pd.Timedelta(days=14) + pd.Timedelta(hours=12 * i + 6), 100.0) for i in range(24)]
    recent = [
        (end - pd.Timedelta(days=2) + pd.Timedelta(hours=8 * i + 4), seconds)
        for i, seconds in enumerate(recent_s)
    ]
    ended, seconds = zip(*(old + recent), strict=True)
    return pd.DataFrame({"task_type": "bwa.align", "duration_s": seconds, "ended_at": ended})


def test_the_limit_follows_a_lasting_level_shift_within_two_days() -> None:
    # The input grew: the last two days' six runs took 1,500 s instead of 100 s. Over the whole
    # window the median and MAD of log durations stay at 100 s and 0, so log_mad would keep its
    # floor of 150 s and alert on every new run; fitted on the recent runs, the limit is 2,250 s.
    window = shifted_window([1500.0] * 6)

    assert limit_of(window, "log_mad") == pytest.approx(2250)
    assert limit_of(window.drop(columns="ended_at"), "log_mad") == pytest.approx(150)


def test_a_few_slow_recent_runs_are_no_level_shift() -> None:
    # Two slow runs among the last six: most recent runs are still where they were.
    window = shifted_window([100.0, 1500.0, 100.0, 1500.0, 100.0, 100.0])

    assert limit_of(window, "log_mad") == pytest.approx(150)


def test_a_hang_never_enters_the_history_a_limit_is_fitted_on() -> None:
    # Six runs hung for two days are still running: they have no duration and are not successful,
    # so the window holds only the 100-second runs, and no level shift is learned from the hang.
    end = pd.Timestamp("2024-03-15")
    done = [finished(f"r{i}", "t", str(end - pd.Timedelta(hours=10 * i + 5)), 100) for i in range(20)]
    hung = [(f"h{i}", "t", end - pd.Timedelta(days=2, hours=-i), pd.NaT, "running") for i in range(6)]
    valid, _ = screen_task_runs(runs_frame(done + hung), end)

    assert limit_of(trailing_durations(valid, end), "log_mad") == pytest.approx(150)


# 91 runs of 100 s and 9 of 400 s in a 14-day window. The 90th percentile u is 100 s; the tail is the
# 9 runs above it, 9% of runs, with a mean excess (the exponential tail's scale b) of 300 s. At a
# 600-s cadence a run in the tail is seen past L = u with probability (b/600)(1 - e^(-600/b)) =
# 0.5 * (1 - e^-2) = 0.432332; runs per month 100 / 14 * 30 = 214.286; expected alerts at u:
# 214.286 * 0.09 * 0.432332 = 8.33783. One per month: L = 100 + 300 * ln(8.33783) = 736.23 s.
BUDGET_WINDOW = [100.0] * 91 + [400.0] * 9


def test_the_alert_budget_sets_the_lowest_limit_that_expects_that_many_false_alerts_a_month() -> None:
    durations = durations_frame("epigenomics.map", BUDGET_WINDOW)

    assert limit_of(durations, "alert_budget") == pytest.approx(100 + 300 * math.log(8.33783), rel=1e-5)
    assert limit_of(durations, "alert_budget", k=2.0) == pytest.approx(
        100 + 300 * math.log(8.33783 / 2), rel=1e-5
    )
    # A budget the window already meets at u: the limit is u, raised to the floor (100 + 50).
    assert limit_of(durations, "alert_budget", k=10.0) == pytest.approx(150)


def test_a_busier_task_type_needs_a_higher_limit_for_the_same_budget() -> None:
    durations = durations_frame("epigenomics.map", BUDGET_WINDOW)

    two_weeks = limit_of(durations, "alert_budget", window_days=14)
    one_day = limit_of(durations, "alert_budget", window_days=1)  # the same runs 14 times as often

    assert one_day == pytest.approx(two_weeks + 300 * math.log(14))


def with_ends(durations: pd.DataFrame, end: str = "2024-03-15") -> pd.DataFrame:
    """`durations` spread evenly over the 14 days before `end`, in their order."""
    step = pd.Timedelta(days=14) / (len(durations) + 1)
    ended = pd.Timestamp(end) - pd.Timedelta(days=14) + step * np.arange(1, len(durations) + 1)
    return durations.assign(ended_at=ended) if "ended_at" not in durations else durations


def from_histogram(durations: pd.DataFrame, estimator: str, **kwargs) -> pd.DataFrame:
    return baselines_from_histogram(duration_histogram(with_ends(durations)), estimator, **kwargs)


@pytest.mark.parametrize("estimator", [e.value for e in Estimator])
@pytest.mark.parametrize(
    "window",
    [
        durations_frame("dbt.build_marts", FIVE_RUNS_S),
        durations_frame("dbt.build_marts", list(range(1, 101))),
        durations_frame("epigenomics.map", BUDGET_WINDOW),
        durations_frame("cycles.output_parser", [0.05] * 20),
        shifted_window([1500.0] * 6),
        shifted_window([100.0, 1500.0, 100.0, 1500.0, 100.0, 100.0]),
    ],
    ids=["five runs", "1 to 100 s", "budget window", "identical", "level shift", "no level shift"],
)
def test_a_histogram_whose_buckets_hold_at_most_two_distinct_durations_gives_the_exact_limits(
    window: pd.DataFrame, estimator: str
) -> None:
    # Buckets are 2% wide: 1, 2, ..., 100 s put at most two runs in one, and identical runs are
    # one value; so the durations the histogram stands for are the runs themselves.
    exact = baselines_from_durations(with_ends(window), estimator)
    summed = from_histogram(window, estimator)

    pd.testing.assert_frame_equal(summed, exact, check_exact=False, rtol=1e-9)


def lognormal_types(n_runs: int, seed: int = 7) -> pd.DataFrame:
    """Three task types of heavy-tailed durations: one mode, two modes, and a tail of slow runs."""
    rng = np.random.default_rng(seed)
    one = rng.lognormal(np.log(120), 0.4, n_runs)
    two = np.where(
        rng.random(n_runs) < 0.7,
        rng.lognormal(np.log(30), 0.2, n_runs),
        rng.lognormal(np.log(300), 0.3, n_runs),
    )
    tail = rng.lognormal(np.log(5), 0.3, n_runs) + rng.exponential(20, n_runs) * (rng.random(n_runs) < 0.1)
    frames = [durations_frame(name, values) for name, values in (("one", one), ("two", two), ("tail", tail))]
    return pd.concat([with_ends(frame) for frame in frames], ignore_index=True)


# The most a limit read off the histogram may differ from the exact one (measured: at most 0.5% on these
# windows; on real runtimes 0.7% for quantile, 0.9% for alert_budget and 2.2% for log_mad, whose MAD is
# a median of runs inside full buckets).
HISTOGRAM_TOLERANCE = {"mean_std": 1e-9, "quantile": 0.01, "alert_budget": 0.01, "log_mad": 0.025}


@pytest.mark.parametrize("estimator", [e.value for e in Estimator])
def test_a_histogram_of_thousands_of_spread_runs_gives_limits_within_a_bucket_of_the_exact_ones(
    estimator: str,
) -> None:
    window = lognormal_types(3_000)
    exact = baselines_from_durations(window, estimator)
    summed = from_histogram(window, estimator)

    pd.testing.assert_frame_equal(summed.drop(columns="upper_limit_s"), exact.drop(columns="upper_limit_s"))
    assert summed["upper_limit_s"].to_numpy() == pytest.approx(
        exact["upper_limit_s"].to_numpy(), rel=HISTOGRAM_TOLERANCE[estimator]
    )


@pytest.mark.parametrize("estimator", [e.value for e in Estimator])
def test_an_empty_histogram_gives_no_baselines(estimator: str) -> None:
    empty = duration_histogram(pd.DataFrame(columns=["task_type", "duration_s", "ended_at"]), NOW)

    assert baselines_from_histogram(empty, estimator).empty


def test_a_busy_task_type_is_fitted_on_evenly_spaced_order_statistics() -> None:
    # 100,000 runs of one type: the fit sees SAMPLE_POINTS order statistics, not every run, and its
    # limits stay within a bucket of the exact ones.
    window = lognormal_types(100_000)
    window = window[window["task_type"].eq("two")]
    histogram = duration_histogram(window)
    assert len(window) >= 10 * SAMPLE_POINTS and len(histogram) < 400

    for estimator in ("quantile", "alert_budget", "log_mad"):
        exact = limit_of(window, estimator)
        summed = float(baselines_from_histogram(histogram, estimator)["upper_limit_s"].iat[0])
        assert summed == pytest.approx(exact, rel=HISTOGRAM_TOLERANCE[estimator]), estimator
