"""Per-task-type duration baselines and the check that flags running tasks past their upper limit.

Plain functions on pandas/numpy: screen raw task runs, fit a baseline per task type (from per-run
durations or from aggregates computed in SQL), and find the running tasks that are overdue.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

import numpy as np
import pandas as pd

# Amperity, "Adding Data Science to the DevOps Toolkit" (shared/seeds/amperity-duration-anomalies.txt):
# a two-week history of successful runs per task; mean + 2 standard deviations is the upper limit;
# running tasks are checked against it every 10 minutes. The minimum history is issue 3's.
WINDOW_DAYS = 14
K = 2.0
MIN_RUNS = 5
CHECK_INTERVAL_S = 600

# 1.4826 * MAD estimates the standard deviation of normally distributed data (here: log durations).
MAD_TO_STD = 1.4826

RUN_COLUMNS = ("run_id", "task_type", "started_at", "ended_at", "status")
FINISHED_STATUSES = ("success", "failed", "aborted")
BASELINE_COLUMNS = ("task_type", "n_runs", "mean_s", "std_s", "upper_limit_s", "has_limit", "estimator")
OVERDUE_COLUMNS = ("run_id", "task_type", "started_at", "elapsed_s", "upper_limit_s", "mean_s", "n_runs")
# The times a run may hold, [first, end): what a nanosecond timestamp can (pandas' span, 1677 to 2262),
# cut to whole days so that a SQL source can state the same span. Anything else is unparseable.
READABLE_TIMES = (pd.Timestamp("1677-09-22", tz="UTC"), pd.Timestamp("2262-04-11", tz="UTC"))
_STARTS_WITH_A_DATE = re.compile("[0-9]{4}-[0-9]{2}-[0-9]{2}")
Fact = TypeVar("Fact")


class Estimator(StrEnum):
    """How an upper limit is fitted to a task type's successful durations; a Config selects one by name.

    Each has one knob, `k`. Every estimator but the seed's `mean_std` also keeps its limit at least a
    spread above the median (`SPREAD_FLOOR_SHARE`, `SPREAD_FLOOR_S`) and follows a level shift
    (`LEVEL_SHIFT_DAYS`); `mean_std` keeps its limit at least `SPREAD_FLOOR_S` above the mean.
    """

    MEAN_STD = "mean_std"
    """The seed's limit: mean + k * std of the durations (at least mean + 1 s)."""
    LOG_MAD = "log_mad"
    """Robust, in log space: exp(median(log d) + k * 1.4826 * MAD(log d))."""
    QUANTILE = "quantile"
    """k times the window's empirical 99th percentile."""
    ALERT_BUDGET = "alert_budget"
    """The lowest limit at which the task type's own history, checked every `check_interval_s`,
    expects at most k false alerts per 30 days (k: the budget, false alerts per task type per month)."""


# mean_std: the seed's k = 2. log_mad: k = 2.5, the moderately conservative cut-off Leys et al. (2013,
# "Detecting outliers: do not use standard deviation around the mean, use absolute deviation around
# the median") recommend for median +/- k * MAD; on lognormal durations it leaves about 0.6% of
# ordinary runs past the limit, where mean + 2 std on the same data leaves about 4%. quantile: 20%
# over the p99 (issue 14's rule). alert_budget: one false alert per task type per month, issue 14's.
DEFAULT_K: dict[Estimator, float] = {
    Estimator.MEAN_STD: K,
    Estimator.LOG_MAD: 2.5,
    Estimator.QUANTILE: 1.2,
    Estimator.ALERT_BUDGET: 1.0,
}
# The estimator a deployment's limits use unless FAULTLINE_ESTIMATOR names another: the one that
# measured best on real runtimes (bench/duration_accuracy.py on ../shared/data/wfinstances: 0.030 false
# alerts per task type per day against mean_std's 0.050, the same recall of 3x slowdowns; at a matched
# rate the best recall), and the only one whose false alerts are what a user accepts rather than what
# the data's shape gives. Its limits come from a histogram the database sums up (bench/durations.py).
# The seed's: FAULTLINE_ESTIMATOR=mean_std.
DEFAULT_ESTIMATOR = Estimator.ALERT_BUDGET
# The least spread a limit allows above the median, whatever the window: half the median (a run twice
# as long as usual is still caught), and at least a second, since stores often keep whole seconds, so
# a window of identical sub-second runs has no spread at all and would set the limit at the median.
SPREAD_FLOOR_SHARE = 0.5
SPREAD_FLOOR_S = 1.0
# A level shift: when more than half of the runs that ended in the window's last LEVEL_SHIFT_DAYS are
# above the 90th percentile of the window's runs before them, the task has changed (a bigger input,
# say) and the limit is fitted on those recent runs alone, so it follows within two days. A hang
# never ends, so it is never in the successful history and can never be learned as normal this way.
LEVEL_SHIFT_DAYS = 2.0
LEVEL_SHIFT_QUANTILE = 0.9
# alert_budget models the window's slowest tenth with an exponential tail (peaks over a threshold),
# so that the expected alerts extrapolate past the slowest run the window happens to hold.
TAIL_QUANTILE = 0.9
DAYS_PER_MONTH = 30.0
# What a database sums up of a window for the estimators that need quantiles, so that no run has to
# leave it: per task type, whether the run ended in the window's last LEVEL_SHIFT_DAYS, and a bucket of
# durations 2% wide in log space (one width fits a one-second task and a ten-hour one), the count,
# sums and extremes of its runs. The quantiles read off it are exact where a bucket holds one or two
# runs (the tail, where limits are), and otherwise within a bucket's width of the exact ones.
HISTOGRAM_COLUMNS = ("task_type", "recent", "bucket", "n_runs", "sum_s", "sum_sq_s", "min_s", "max_s")
HISTOGRAM_BUCKET_WIDTH = 0.02
# A task type with more runs than this in a window is fitted on this many evenly spaced order
# statistics read off its histogram: memory and time stay bounded, whatever the history holds.
SAMPLE_POINTS = 10_000


def estimator_named(name: str) -> Estimator:
    """The Estimator called `name`, or a ValueError listing the valid names."""
    try:
        return Estimator(name)
    except ValueError:
        valid = ", ".join(e.value for e in Estimator)
        raise ValueError(f"unknown estimator {name!r}; choose one of {valid}") from None


def require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Raise a ValueError naming the first of `columns` that `frame` lacks."""
    for column in columns:
        if column not in frame.columns:
            raise ValueError(
                f"{what} has no column {column!r}; expected columns {', '.join(columns)} "
                f"(got {', '.join(map(str, frame.columns)) or 'none'})"
            )


def to_utc_naive(values: pd.Series) -> pd.Series:
    """Timestamps as naive UTC datetime64[ns]: naive input is taken as UTC, aware input is converted.

    Anything that is not a timestamp, or text starting with a date (YYYY-MM-DD) that reads as an ISO
    8601 timestamp, or that lies outside `READABLE_TIMES`, becomes NaT: so do a number, which is no
    timestamp (pandas would read it as an offset from 1970 in a future version, and warns), and
    pandas' words 'now' and 'today', which SQLite does not read either.
    """
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        values = pd.Series(pd.NaT, index=values.index)
    elif not pd.api.types.is_datetime64_any_dtype(values):
        kind = pd.api.types.infer_dtype(values, skipna=True)
        if kind == "string":
            values = values.where(values.str.match(_STARTS_WITH_A_DATE, na=False))
        elif kind not in ("empty", "datetime", "date"):  # a mixture: each value looked at
            values = values.map(_time_or_none)
    parsed = pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")
    first, end = READABLE_TIMES
    parsed = parsed.where(parsed.isna() | ((parsed >= first) & (parsed < end)))
    return parsed.dt.tz_localize(None).dt.as_unit("ns")


def _time_or_none(value: object) -> object:
    if isinstance(value, datetime | date | np.datetime64):
        return value
    return value if isinstance(value, str) and _STARTS_WITH_A_DATE.match(value) else None


def utc_naive_timestamp(ts: pd.Timestamp) -> pd.Timestamp:
    """`ts` as a naive UTC Timestamp with nanosecond unit, comparable with `to_utc_naive` columns."""
    ts = pd.Timestamp(ts)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.as_unit("ns")


def _holds_nul(values: pd.Series) -> pd.Series:
    try:
        if "\x00" not in "".join(values.tolist()):  # the usual case, and ten times faster
            return pd.Series(False, index=values.index)
    except TypeError:  # not all text: look value by value
        pass
    try:
        return values.str.contains("\x00", regex=False, na=False).astype(bool)
    except AttributeError:  # no text in the column at all, so no NUL either
        return pd.Series(False, index=values.index)


@dataclass(frozen=True)
class RunFacts(Generic[Fact]):
    """What the screening knows of each run, one value per run: boolean pandas Series for
    `screen_task_runs`, SQL expressions for a SQL source. `&`, `|`, `~` and comparisons mean the same
    on both, so `REJECTIONS` reads them alike.

    Where SQL has NULL and pandas False (a missing status is in no list; an unreadable time is not
    after `now`), an earlier rule of `REJECTIONS` already holds, and the first rule that holds decides.
    """

    run_id_missing: Fact
    task_type_missing: Fact
    run_id_has_nul: Fact
    task_type_has_nul: Fact
    status_missing: Fact
    running: Fact
    finished: Fact
    started_missing: Fact
    started_unreadable: Fact  # present, but no time in READABLE_TIMES
    ended_present: Fact
    ended_unreadable: Fact
    started_after_now: Fact
    ends_before_start: Fact
    ends_at_start: Fact


# Why a run is never used: each rule with the reason it gives, in order, the first that holds wins.
# The one definition of the screening: `screen_task_runs` applies it to a frame, and the SQL workflow
# source turns it into a CASE (resources/workflow.py), so both give a run the same reason.
REJECTIONS: tuple[tuple[str, Callable[[RunFacts], Any]], ...] = (
    ("missing run_id", lambda run: run.run_id_missing),
    ("missing task_type", lambda run: run.task_type_missing),
    # PostgreSQL cannot store a NUL character, so no alert or limit could be kept for such a run.
    ("NUL character in run_id", lambda run: run.run_id_has_nul),
    ("NUL character in task_type", lambda run: run.task_type_has_nul),
    ("missing status", lambda run: run.status_missing),
    # Without the status itself: it is data (a secret, maybe), and each value would be a reason of its own.
    ("unknown status", lambda run: ~(run.running | run.finished)),
    ("missing started_at", lambda run: run.started_missing),
    ("unparseable started_at", lambda run: run.started_unreadable),
    ("unparseable ended_at", lambda run: run.ended_unreadable),
    ("started in the future", lambda run: run.started_after_now),
    ("running run with ended_at set", lambda run: run.running & run.ended_present),
    ("finished run without ended_at", lambda run: run.finished & ~run.ended_present),
    ("ended_at before started_at", lambda run: run.finished & run.ends_before_start),
    ("zero duration", lambda run: run.finished & run.ends_at_start),
)
REJECTION_REASONS = tuple(reason for reason, _ in REJECTIONS)


def screen_task_runs(runs: pd.DataFrame, now: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split raw task runs into valid runs and rejected runs, each rejection with its reason.

    `runs` needs the columns run_id, task_type, started_at, ended_at (NaT while running) and status
    (running, success, failed or aborted); a missing column is a ValueError naming it. Bad rows never
    raise: each goes to the rejected frame (run_id, task_type, reason) with the first reason of
    `REJECTIONS` that applies (a start after `now` is in the future).

    Valid runs keep their columns, with started_at/ended_at as naive UTC (see `to_utc_naive`), plus
    `duration_s`: seconds from start to end for finished runs, NaN for running ones. Task types are
    kept as data whatever they contain.
    """
    require_columns(runs, RUN_COLUMNS, "task runs")
    runs = runs.reset_index(drop=True)
    now = utc_naive_timestamp(now)
    started = to_utc_naive(runs["started_at"])
    ended = to_utc_naive(runs["ended_at"])
    status = runs["status"]
    finished = status.isin(FINISHED_STATUSES)
    duration_s = (ended - started).dt.total_seconds()
    facts = RunFacts(
        run_id_missing=runs["run_id"].isna(),
        task_type_missing=runs["task_type"].isna(),
        run_id_has_nul=_holds_nul(runs["run_id"]),
        task_type_has_nul=_holds_nul(runs["task_type"]),
        status_missing=status.isna(),
        running=status.eq("running"),
        finished=finished,
        started_missing=runs["started_at"].isna(),
        started_unreadable=started.isna() & runs["started_at"].notna(),
        ended_present=runs["ended_at"].notna(),
        ended_unreadable=ended.isna() & runs["ended_at"].notna(),
        started_after_now=started > now,
        ends_before_start=ended < started,
        ends_at_start=ended == started,
    )
    reason = pd.Series(
        np.select(
            [rule(facts).to_numpy(dtype=bool) for _, rule in REJECTIONS], REJECTION_REASONS, default=""
        ),
        index=runs.index,
    )
    rejected_mask = reason.ne("")

    valid = runs.loc[~rejected_mask].assign(
        started_at=started[~rejected_mask],
        ended_at=ended[~rejected_mask],
        duration_s=duration_s[~rejected_mask].where(finished[~rejected_mask]),
    )
    rejected = runs.loc[rejected_mask, ["run_id", "task_type"]].assign(reason=reason[rejected_mask])
    return valid.reset_index(drop=True), rejected.reset_index(drop=True)


def trailing_durations(
    runs: pd.DataFrame, end: pd.Timestamp, window_days: float = WINDOW_DAYS
) -> pd.DataFrame:
    """Durations (task_type, duration_s, ended_at) of the successful runs that ended in
    [end - window_days, end).

    `runs` are valid runs from `screen_task_runs`. A run belongs to the window by its end, the moment
    its duration became known; failed and aborted runs never count (the seed filters them out). In
    SQL: `WHERE status = 'success' AND ended_at >= :start AND ended_at < :end`.
    """
    require_columns(runs, ("task_type", "ended_at", "status", "duration_s"), "valid runs")
    end = utc_naive_timestamp(end)
    start = end - pd.Timedelta(days=window_days)
    ended = to_utc_naive(runs["ended_at"])
    in_window = runs["status"].eq("success") & ended.ge(start) & ended.lt(end)
    return (
        runs.loc[in_window, ["task_type", "duration_s"]]
        .assign(ended_at=ended[in_window])
        .reset_index(drop=True)
    )


def _check_fit_parameters(k: float, min_runs: int) -> None:
    if k < 0:
        raise ValueError(f"k must be at least 0, got {k}")
    if min_runs < 2:
        raise ValueError(
            f"min_runs must be at least 2 (a sample standard deviation needs two runs), got {min_runs}"
        )


def _baselines(
    task_type: pd.Index,
    n_runs: pd.Series,
    mean_s: pd.Series,
    std_s: pd.Series,
    upper_limit_s: pd.Series,
    min_runs: int,
    estimator: Estimator,
) -> pd.DataFrame:
    has_limit = n_runs.ge(min_runs) & np.isfinite(upper_limit_s)
    return pd.DataFrame(
        {
            "task_type": task_type,
            "n_runs": n_runs.astype("int64").to_numpy(),
            "mean_s": mean_s.astype("float64").to_numpy(),
            "std_s": std_s.astype("float64").to_numpy(),
            "upper_limit_s": upper_limit_s.where(has_limit).astype("float64").to_numpy(),
            "has_limit": has_limit.to_numpy(dtype=bool),
            "estimator": estimator.value,
        },
        columns=list(BASELINE_COLUMNS),
    )


def _mean_std_limit(mean: pd.Series, std: pd.Series, k: float) -> pd.Series:
    """The seed's mean + k * std, at least SPREAD_FLOOR_S above the mean: a window of identical
    durations (std 0) would otherwise put the limit at the mean, where every run a hair slower is past
    it. Only the absolute floor, not the others' share of the median: mean_std stays the seed's limit
    on every window with any spread to speak of."""
    return mean + (k * std).clip(lower=SPREAD_FLOOR_S)


def baselines_from_moments(moments: pd.DataFrame, k: float = K, min_runs: int = MIN_RUNS) -> pd.DataFrame:
    """The seed's mean + k * std limits from per-task-type aggregates computed in the database.

    `moments` has one row per task type with the columns task_type, n_runs, mean_s and mean_sq_s,
    which any SQL engine computes over the successful runs of the window (see `trailing_durations`):

        SELECT task_type, COUNT(*) AS n_runs, AVG(d) AS mean_s, AVG(d * d) AS mean_sq_s
        FROM (SELECT task_type, <ended_at - started_at in seconds> AS d FROM task_runs
              WHERE status = 'success' AND ended_at >= :start AND ended_at < :end)
        GROUP BY task_type

    std_s is the sample standard deviation (ddof=1): (mean_sq_s - mean_s**2) * n / (n - 1), clipped
    at 0 because in floating point the one-pass formula can come out slightly negative. The limit is
    mean + max(k * std, SPREAD_FLOOR_S) (see `_mean_std_limit`). Returns one
    row per task type: task_type, n_runs, mean_s, std_s, upper_limit_s, has_limit, estimator
    ("mean_std"). With fewer than `min_runs` runs has_limit is False and upper_limit_s is NaN. The
    other estimators need quantiles, which plain SQL aggregates cannot give: use
    `baselines_from_histogram` for them.
    """
    require_columns(moments, ("task_type", "n_runs", "mean_s", "mean_sq_s"), "duration moments")
    _check_fit_parameters(k, min_runs)
    n = moments["n_runs"].astype("float64")
    mean = moments["mean_s"].astype("float64")
    variance = ((moments["mean_sq_s"].astype("float64") - mean**2) * n / (n - 1)).clip(lower=0)
    std = np.sqrt(variance.where(n > 1))
    return _baselines(
        pd.Index(moments["task_type"]),
        n,
        mean,
        std,
        _mean_std_limit(mean, std, k),
        min_runs,
        Estimator.MEAN_STD,
    ).sort_values("task_type", ignore_index=True)


def baselines_from_durations(
    durations: pd.DataFrame,
    estimator: str = Estimator.MEAN_STD,
    k: float | None = None,
    min_runs: int = MIN_RUNS,
    window_days: float = WINDOW_DAYS,
    check_interval_s: float = CHECK_INTERVAL_S,
) -> pd.DataFrame:
    """Upper limits per task type from per-run durations (columns task_type, duration_s, and
    optionally ended_at, which level shifts need).

    Estimators (see `Estimator`), `k=None` taking the estimator's default from `DEFAULT_K`:
    - "mean_std": mean + k * std, k = 2 (the seed's), as the seed has it but at least SPREAD_FLOOR_S
      above the mean, so that identical durations do not put the limit at them.
    - "log_mad": exp(median(log d) + k * 1.4826 * MAD(log d)), k = 2.5. Fitted in log space because
      durations are heavy-tailed, and with median and MAD so that a few slow runs in the history
      do not stretch the limit.
    - "quantile": k * the 99th percentile of the durations, k = 1.2.
    - "alert_budget": k false alerts per task type per month, k = 1 (see `alert_budget_limit`);
      `window_days` and `check_interval_s` give the runs per day and the sensor's cadence.
    All but mean_std keep the limit at least median + max(SPREAD_FLOOR_SHARE * median,
    SPREAD_FLOOR_S), and, when `durations` has ended_at, are fitted on the runs of the last
    LEVEL_SHIFT_DAYS alone when most of those are above the 90th percentile of the runs before
    them (the window ends at the latest ended_at).

    Returns one row per task type, sorted by task_type: task_type, n_runs, mean_s, std_s (the sample
    mean and sample standard deviation, ddof=1, of the durations, whatever the estimator),
    upper_limit_s, has_limit, estimator. With fewer than `min_runs` runs has_limit is False and
    upper_limit_s is NaN. Durations must be positive and finite (as `screen_task_runs` leaves them).
    """
    require_columns(durations, ("task_type", "duration_s"), "durations")
    estimator = estimator_named(estimator)
    k = DEFAULT_K[estimator] if k is None else k
    _check_fit_parameters(k, min_runs)
    seconds = _checked_seconds(durations)
    by_type = seconds.groupby(durations["task_type"], sort=True)
    n = by_type.size()
    mean = by_type.mean()
    std = by_type.std(ddof=1)
    if estimator is Estimator.MEAN_STD:
        upper = _mean_std_limit(mean, std, k)
    else:
        recent = pd.Series(False, index=durations.index)
        if "ended_at" in durations.columns and len(durations):
            ended = to_utc_naive(durations["ended_at"])
            recent = ended.ge(ended.max() - pd.Timedelta(days=LEVEL_SHIFT_DAYS))
        upper = pd.Series(
            [
                _robust_limit(
                    seconds.to_numpy()[rows],
                    recent.to_numpy()[rows],
                    estimator,
                    k,
                    min_runs,
                    window_days,
                    check_interval_s,
                )  # fmt: skip
                for rows in by_type.indices.values()
            ],
            index=n.index,
            dtype="float64",
        )
    return _baselines(n.index, n, mean, std, upper, min_runs, estimator)


def _checked_seconds(durations: pd.DataFrame) -> pd.Series:
    seconds = durations["duration_s"].astype("float64")
    bad = ~(np.isfinite(seconds) & (seconds > 0))
    if bad.any():
        raise ValueError(
            f"durations has {int(bad.sum())} duration_s values that are not positive and finite; "
            "screen the runs with screen_task_runs first"
        )
    return seconds


def duration_histogram(durations: pd.DataFrame, end: pd.Timestamp | None = None) -> pd.DataFrame:
    """The window's durations (task_type, duration_s, ended_at) summed up per task type, recent or
    not, and log-duration bucket: HISTOGRAM_COLUMNS, what a SQL source computes in the database.

    A run is recent when it ended in the LEVEL_SHIFT_DAYS before `end` (default: the latest
    ended_at); its bucket is floor(ln(duration_s) / HISTOGRAM_BUCKET_WIDTH). In SQL:

        SELECT task_type, ended_at >= :end - 2 days AS recent, FLOOR(LN(d) / 0.02) AS bucket,
               COUNT(*), SUM(d), SUM(d * d), MIN(d), MAX(d)
        FROM <the window's successful runs> GROUP BY task_type, recent, bucket
    """
    require_columns(durations, ("task_type", "duration_s", "ended_at"), "durations")
    seconds = _checked_seconds(durations)
    ended = to_utc_naive(durations["ended_at"])
    end = ended.max() if end is None else utc_naive_timestamp(end)
    summed = pd.DataFrame(
        {
            "task_type": durations["task_type"].to_numpy(),
            "recent": ended.ge(end - pd.Timedelta(days=LEVEL_SHIFT_DAYS)).to_numpy(dtype=bool),
            "bucket": np.floor(np.log(seconds.to_numpy()) / HISTOGRAM_BUCKET_WIDTH).astype("int64"),
            "d": seconds.to_numpy(),
            "d2": seconds.to_numpy() ** 2,
        }
    )
    return (
        summed.groupby(["task_type", "recent", "bucket"], sort=True)
        .agg(
            n_runs=("d", "size"),
            sum_s=("d", "sum"),
            sum_sq_s=("d2", "sum"),
            min_s=("d", "min"),
            max_s=("d", "max"),
        )  # fmt: skip
        .reset_index()[list(HISTOGRAM_COLUMNS)]
    )


def sample_from_histogram(
    n_runs: np.ndarray, min_s: np.ndarray, max_s: np.ndarray, points: int = SAMPLE_POINTS
) -> WindowSample:
    """The sorted durations a task type's buckets (in bucket order) stand for: each bucket's runs
    spread evenly from its shortest to its longest, so one or two runs in a bucket come out exact.
    Above `points` runs, that many order statistics at evenly spaced ranks."""
    n_runs = np.asarray(n_runs, dtype="int64")
    total = int(n_runs.sum())
    if total == 0:
        return WindowSample(np.empty(0), 0)
    ranks = np.arange(total, dtype="float64") if total <= points else np.linspace(0, total - 1, points)
    first = np.cumsum(n_runs) - n_runs
    bucket = np.searchsorted(first, ranks, side="right") - 1
    within = np.minimum(ranks - first[bucket], n_runs[bucket] - 1)
    step = (np.asarray(max_s)[bucket] - np.asarray(min_s)[bucket]) / np.maximum(n_runs[bucket] - 1, 1)
    return WindowSample(np.asarray(min_s)[bucket] + within * step, total)


class _HistogramPart:
    """One part of a window's histogram (all runs, recent or older), its buckets in (task type,
    bucket) order, read as the sorted durations it stands for: each bucket's runs spread evenly from
    its shortest to its longest (`sample_from_histogram`), for every task type at once."""

    def __init__(
        self, code: np.ndarray, n: np.ndarray, low: np.ndarray, high: np.ndarray, total: np.ndarray, size: int
    ) -> None:
        self.code, self.n, self.low, self.high, self.sum = code, n, low, high, total
        self.step = (high - low) / np.maximum(n - 1, 1)
        self.first_rank = np.cumsum(n) - n  # of each bucket's first run, over all task types
        self.n_runs = np.bincount(code, weights=n, minlength=size).astype("int64")
        self.type_first_rank = np.cumsum(self.n_runs) - self.n_runs
        self.type_first_row = np.searchsorted(code, np.arange(size + 1))

    def rows_of(self, code: int) -> slice:
        return slice(self.type_first_row[code], self.type_first_row[code + 1])

    def _order_statistic(self, rank: np.ndarray) -> np.ndarray:
        at = self.type_first_rank + rank
        row = np.clip(np.searchsorted(self.first_rank, at, side="right") - 1, 0, None)
        return self.low[row] + np.minimum(at - self.first_rank[row], self.n[row] - 1) * self.step[row]

    def quantile(self, q: float) -> np.ndarray:
        """Each task type's q-quantile as np.quantile interpolates it (NaN without runs)."""
        if not self.n.size:
            return np.full(self.n_runs.size, np.nan)
        position = np.maximum(self.n_runs - 1, 0) * q
        below = np.floor(position).astype("int64")
        low = self._order_statistic(below)
        high = self._order_statistic(np.minimum(below + 1, np.maximum(self.n_runs - 1, 0)))
        return np.where(self.n_runs > 0, low + (position - below) * (high - low), np.nan)

    def above(self, threshold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per task type, the runs longer than its `threshold`: (how many, their total duration); whole
        buckets by their exact sums, the bucket the threshold falls in by its spread runs."""
        at = threshold[self.code]
        whole = self.low > at
        split = (self.low <= at) & (self.high > at)
        # The spread runs at or below the threshold; a hair of slack so one equal to it counts there.
        at_or_below = np.floor((at - self.low) / np.where(split, self.step, 1) + 1e-9) + 1
        n_above = np.where(whole, self.n, np.where(split, self.n - at_or_below, 0))
        first_above = self.n - n_above
        spread_sum = n_above * self.low + self.step * (first_above + self.n - 1) * n_above / 2
        sum_above = np.where(whole, self.sum, np.where(split, spread_sum, 0.0))
        size = self.n_runs.size
        return (
            np.bincount(self.code, weights=n_above, minlength=size),
            np.bincount(self.code, weights=sum_above, minlength=size),
        )


def baselines_from_histogram(
    histogram: pd.DataFrame,
    estimator: str = Estimator.MEAN_STD,
    k: float | None = None,
    min_runs: int = MIN_RUNS,
    window_days: float = WINDOW_DAYS,
    check_interval_s: float = CHECK_INTERVAL_S,
) -> pd.DataFrame:
    """`baselines_from_durations` from a window's `duration_histogram` (computed here or in the
    database), so that the window's runs never have to be loaded.

    n_runs, mean_s and std_s are exact (from the buckets' counts and sums), and so is mean_std's limit.
    The other estimators are fitted as `baselines_from_durations` fits them, on the durations the
    buckets stand for (each bucket's runs spread evenly from its shortest to its longest; alert_budget's
    tail from the exact sums of the buckets above its threshold): their limits are exact when each
    bucket holds at most two distinct durations, and within about a bucket's width (2%) otherwise.
    quantile and alert_budget are fitted for all task types at once, in time and memory proportional
    to the histogram's rows; log_mad task type by type, on at most SAMPLE_POINTS durations each.
    """
    require_columns(histogram, HISTOGRAM_COLUMNS, "duration histogram")
    estimator = estimator_named(estimator)
    k = DEFAULT_K[estimator] if k is None else k
    _check_fit_parameters(k, min_runs)
    codes, names = pd.factorize(histogram["task_type"], sort=True)
    task_types = pd.Index(names)
    columns = {name: histogram[name].to_numpy(dtype="float64") for name in HISTOGRAM_COLUMNS[3:]}
    recent = histogram["recent"].to_numpy(dtype=bool)
    bucket = histogram["bucket"].to_numpy(dtype="int64")
    size = len(task_types)
    n = pd.Series(np.bincount(codes, weights=columns["n_runs"], minlength=size), index=task_types)
    n = n.astype("int64")
    mean = pd.Series(np.bincount(codes, weights=columns["sum_s"], minlength=size), index=task_types) / n
    sum_sq = pd.Series(np.bincount(codes, weights=columns["sum_sq_s"], minlength=size), index=task_types)
    variance = ((sum_sq - n * mean**2) / (n - 1)).clip(lower=0)
    std = np.sqrt(variance.where(n > 1))
    if estimator is Estimator.MEAN_STD:
        upper = _mean_std_limit(mean, std, k)
    else:
        order = np.lexsort((recent, bucket, codes))
        codes, recent, bucket = codes[order], recent[order], bucket[order]
        columns = {name: values[order] for name, values in columns.items()}

        def part(rows: np.ndarray) -> _HistogramPart:
            return _HistogramPart(
                codes[rows], columns["n_runs"][rows].astype("int64"), columns["min_s"][rows],
                columns["max_s"][rows], columns["sum_s"][rows], size,
            )  # fmt: skip

        # A bucket's recent and older runs are next to each other: one bucket of the whole window.
        starts = np.ones(codes.size, dtype=bool)
        starts[1:] = (codes[1:] != codes[:-1]) | (bucket[1:] != bucket[:-1])
        first = np.flatnonzero(starts)
        window = _HistogramPart(
            codes[first],
            np.add.reduceat(columns["n_runs"], first).astype("int64") if len(first) else np.empty(0, "int64"),
            np.minimum.reduceat(columns["min_s"], first) if len(first) else np.empty(0),
            np.maximum.reduceat(columns["max_s"], first) if len(first) else np.empty(0),
            np.add.reduceat(columns["sum_s"], first) if len(first) else np.empty(0),
            size,
        )
        parts = (window, part(recent), part(~recent))
        fit = _fit_log_mad if estimator is Estimator.LOG_MAD else _fit_quantiles
        upper = pd.Series(
            fit(*parts, estimator, k, min_runs, window_days, check_interval_s), index=task_types
        )
    return _baselines(task_types, n, mean, std, upper, min_runs, estimator)


def _fit_quantiles(
    window: _HistogramPart,
    recent: _HistogramPart,
    older: _HistogramPart,
    estimator: Estimator,
    k: float,
    min_runs: int,
    window_days: float,
    check_interval_s: float,
) -> np.ndarray:
    """quantile's and alert_budget's limits for every task type at once, as `_fitted_limit` sets them."""
    with np.errstate(invalid="ignore", divide="ignore"):
        shifted = (
            (recent.n_runs >= min_runs)
            & (older.n_runs >= min_runs)
            & (recent.quantile(0.5) > older.quantile(LEVEL_SHIFT_QUANTILE))
        )
        limits = []
        for part, days in ((window, window_days), (recent, min(LEVEL_SHIFT_DAYS, window_days))):
            median = part.quantile(0.5)
            if estimator is Estimator.QUANTILE:
                limit = k * part.quantile(0.99)
            else:
                threshold = part.quantile(TAIL_QUANTILE)
                n_above, sum_above = part.above(threshold)
                limit = _alert_budget_limits(
                    threshold, n_above / part.n_runs, sum_above / n_above - threshold,
                    part.n_runs / days, k, check_interval_s,
                )  # fmt: skip
            limits.append(np.maximum(limit, median + np.maximum(SPREAD_FLOOR_SHARE * median, SPREAD_FLOOR_S)))
    return np.where(shifted, limits[1], limits[0])


def _fit_log_mad(
    window: _HistogramPart,
    recent: _HistogramPart,
    older: _HistogramPart,
    estimator: Estimator,
    k: float,
    min_runs: int,
    window_days: float,
    check_interval_s: float,
) -> np.ndarray:
    """log_mad's limits task type by type: a median of distances to the median has no one-pass form."""

    def sample(part: _HistogramPart, code: int) -> WindowSample:
        rows = part.rows_of(code)
        return sample_from_histogram(part.n[rows], part.low[rows], part.high[rows])

    return np.array(
        [
            _fitted_limit(
                sample(window, code),
                sample(recent, code),
                sample(older, code),
                estimator,
                k,
                min_runs,
                window_days,
                check_interval_s,
            )  # fmt: skip
            for code in range(window.n_runs.size)
        ],
        dtype="float64",
    )


def _robust_limit(
    seconds: np.ndarray,
    recent: np.ndarray,
    estimator: Estimator,
    k: float,
    min_runs: int,
    window_days: float,
    check_interval_s: float,
) -> float:
    return _fitted_limit(
        WindowSample(seconds, seconds.size),
        WindowSample(seconds[recent], int(recent.sum())),
        WindowSample(seconds[~recent], int((~recent).sum())),
        estimator, k, min_runs, window_days, check_interval_s,
    )  # fmt: skip


@dataclass(frozen=True)
class WindowSample:
    """Durations standing for `n_runs` runs: every run's (exactly), or evenly spaced order statistics
    read off a histogram (`sample_from_histogram`); the estimators only use quantiles and shares."""

    seconds: np.ndarray
    n_runs: int


def _fitted_limit(
    window: WindowSample,
    recent: WindowSample,
    older: WindowSample,
    estimator: Estimator,
    k: float,
    min_runs: int,
    window_days: float,
    check_interval_s: float,
) -> float:
    days = window_days
    if (
        recent.n_runs >= min_runs
        and older.n_runs >= min_runs
        and np.median(recent.seconds) > np.quantile(older.seconds, LEVEL_SHIFT_QUANTILE)
    ):
        window, days = recent, min(LEVEL_SHIFT_DAYS, window_days)
    seconds = window.seconds
    median = float(np.median(seconds))
    if estimator is Estimator.LOG_MAD:
        log_d = np.log(seconds)
        limit = float(np.exp(np.median(log_d) + k * MAD_TO_STD * np.median(np.abs(log_d - np.median(log_d)))))
    elif estimator is Estimator.QUANTILE:
        limit = k * float(np.quantile(seconds, 0.99))
    else:
        limit = alert_budget_limit(seconds, window.n_runs / days, k, check_interval_s)
    return max(limit, median + max(SPREAD_FLOOR_SHARE * median, SPREAD_FLOOR_S))


def alert_budget_limit(
    seconds: np.ndarray, runs_per_day: float, false_alerts_per_month: float, check_interval_s: float
) -> float:
    """The lowest limit at which runs like `seconds`, `runs_per_day` of them, checked every
    `check_interval_s`, give at most `false_alerts_per_month` alerts in 30 days.

    A run of duration d against limit L is seen past it by a tick with probability
    min(1, (d - L) / interval) (the ticks fall at a uniform phase to its start). Runs above the
    window's 90th percentile u are taken as an exponential tail, of scale b = their mean excess over
    u; for L >= u the expected alerts per month are then
        runs_per_month * P(d > u) * exp(-(L - u) / b) * (b / interval) * (1 - exp(-interval / b)),
    solved for L. When even L = u meets the budget, the limit is u (a floor applies after).
    """
    if false_alerts_per_month <= 0:
        raise ValueError(f"false_alerts_per_month must be positive, got {false_alerts_per_month}")
    threshold = float(np.quantile(seconds, TAIL_QUANTILE))
    excess = seconds[seconds > threshold] - threshold
    if excess.size == 0:
        return threshold
    return float(
        _alert_budget_limits(
            np.float64(threshold),
            excess.size / seconds.size,
            float(excess.mean()),
            runs_per_day,
            false_alerts_per_month,
            check_interval_s,
        )  # fmt: skip
    )


def _alert_budget_limits(
    threshold: np.ndarray,
    tail_share: np.ndarray,
    scale: np.ndarray,
    runs_per_day: np.ndarray,
    false_alerts_per_month: float,
    check_interval_s: float,
) -> np.ndarray:
    """`alert_budget_limit` from the tail's share of runs and scale (the threshold where there is no
    tail), elementwise."""
    with np.errstate(invalid="ignore", divide="ignore"):
        seen_share = (scale / check_interval_s) * -np.expm1(-check_interval_s / scale)
        expected_at_threshold = runs_per_day * DAYS_PER_MONTH * tail_share * seen_share
        margin = scale * np.maximum(0.0, np.log(expected_at_threshold / false_alerts_per_month))
    return np.where(tail_share > 0, threshold + margin, threshold)


@dataclass(frozen=True)
class OverdueScan:
    """What one check of the running tasks found.

    overdue: the running tasks past their limit (run_id, task_type, started_at, elapsed_s,
    upper_limit_s, mean_s, n_runs), longest-running first. n_running: tasks looked at; n_checked:
    those whose task type has a limit; n_without_baseline: the rest (no history or too little).
    """

    overdue: pd.DataFrame
    n_running: int
    n_checked: int
    n_without_baseline: int


def find_overdue_tasks(running: pd.DataFrame, baselines: pd.DataFrame, now: pd.Timestamp) -> OverdueScan:
    """Running tasks whose elapsed time at `now` is strictly past their task type's upper limit.

    `running` has run_id, task_type and started_at (every row is taken as running), and may have
    `fallback_task_type`: a task type whose limit a task borrows while its own has none (a Dagster
    step new to its job borrows the limit of the asset it materializes); `limit_from`, then a column
    of `overdue`, names the task type whose limit was passed, None for the task's own. `baselines` is
    the output of `baselines_from_moments` or `baselines_from_durations`, one row per task type.
    Vectorised: one hash join of the running tasks against the baselines (two with fallbacks).
    """
    require_columns(running, ("run_id", "task_type", "started_at"), "running tasks")
    require_columns(baselines, ("task_type", "n_runs", "mean_s", "upper_limit_s", "has_limit"), "baselines")
    if baselines["task_type"].duplicated().any():
        raise ValueError("baselines has several rows for one task type; fit one baseline per task type")
    now = utc_naive_timestamp(now)
    started = to_utc_naive(running["started_at"])
    limit_columns = ["task_type", "upper_limit_s", "mean_s", "n_runs"]
    # Task types as objects on both sides: an empty frame's column may come as float64.
    limits = baselines.loc[baselines["has_limit"].astype(bool), limit_columns].astype({"task_type": object})
    scan = pd.DataFrame(
        {
            "run_id": running["run_id"].to_numpy(),
            "task_type": running["task_type"].to_numpy(dtype=object),
            "started_at": started.to_numpy(),
            "elapsed_s": (now - started).dt.total_seconds().to_numpy(),
        }
    ).merge(limits, on="task_type", how="left")
    columns = list(OVERDUE_COLUMNS)
    if "fallback_task_type" in running:
        columns.append("limit_from")
        scan["limit_from"] = None
        borrowed = (
            pd.DataFrame({"task_type": running["fallback_task_type"].to_numpy(dtype=object)})
            .merge(limits, on="task_type", how="left")
            .rename(columns={"task_type": "fallback"})
        )
        borrows = scan["upper_limit_s"].isna().to_numpy() & borrowed["upper_limit_s"].notna().to_numpy()
        for column in ("upper_limit_s", "mean_s", "n_runs"):
            scan[column] = scan[column].mask(borrows, borrowed[column].to_numpy())
        scan["limit_from"] = scan["limit_from"].mask(borrows, borrowed["fallback"].to_numpy())
    checked = scan["upper_limit_s"].notna()
    overdue = scan.loc[checked & scan["elapsed_s"].gt(scan["upper_limit_s"]), columns]
    overdue = overdue.sort_values(["started_at", "run_id"], ignore_index=True)
    n_checked = int(checked.sum())
    return OverdueScan(
        overdue=overdue.astype({"n_runs": "int64"}),
        n_running=len(scan),
        n_checked=n_checked,
        n_without_baseline=len(scan) - n_checked,
    )
