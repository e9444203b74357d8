"""Replays task-run history at the sensor's cadence to measure how each duration estimator would alert.

A running task is only seen at check ticks, so a task shorter than the check interval may finish
between two ticks and never be looked at: the seed's argument for needing no special case for short
tasks, built into the measurement.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from faultline.durations import (
    CHECK_INTERVAL_S,
    DEFAULT_K,
    MIN_RUNS,
    WINDOW_DAYS,
    Estimator,
    baselines_from_durations,
    baselines_from_histogram,
    duration_histogram,
    estimator_named,
    require_columns,
    to_utc_naive,
    trailing_durations,
)

BACKTEST_COLUMNS = (
    "estimator",
    "k",
    "false_alerts_per_task_type_per_day",
    "slowdown_recall",
    "slowdown_recall_over_interval",
    "hang_recall",
    "mean_detection_delay_s",
    "n_task_days",
    "n_injected_slowdowns",
    "n_injected_hangs",
)

# A hung run never ends within its day; it is treated as running until a day after that day's end,
# so it is seen by every tick of the next 24 hours too.
HANG_OBSERVED_FOR = pd.Timedelta(days=1)

_NS_PER_S = 1_000_000_000


def replay_alerts(
    runs: pd.DataFrame,
    limits: Sequence[float] | np.ndarray | pd.Series,
    check_interval_s: float = CHECK_INTERVAL_S,
    tick_offset_s: float = 0,
) -> pd.Series:
    """The tick at which each run first alerts, or NaT if it never does.

    `runs` has started_at and ended_at (NaT: never ends); `limits` holds one upper limit in seconds
    per row of `runs`, in the same order (NaN: no limit, never alerts). Ticks are at
    tick_offset_s + n * check_interval_s seconds from the Unix epoch (UTC). A run alerts at the first
    tick t with started_at <= t < ended_at and t - started_at > limit, so a run that starts after one
    tick and ends before the next is never checked. Returns a datetime64[ns] Series on `runs`' index.
    """
    require_columns(runs, ("started_at", "ended_at"), "runs")
    interval_ns = round(check_interval_s * _NS_PER_S)
    if interval_ns <= 0:
        raise ValueError(f"check_interval_s must be positive, got {check_interval_s}")
    offset_ns = round(tick_offset_s * _NS_PER_S)
    limit_s = np.asarray(limits, dtype="float64")
    if limit_s.shape != (len(runs),):
        raise ValueError(f"limits has {limit_s.size} values for {len(runs)} runs; give one limit per run")

    started = to_utc_naive(runs["started_at"]).to_numpy()
    ended = to_utc_naive(runs["ended_at"]).to_numpy()
    checkable = ~np.isnat(started) & np.isfinite(limit_s)
    started_ns = np.where(checkable, started.view("int64"), 0)
    # In whole nanoseconds, t - started > limit  <=>  t > started + floor(limit).
    limit_ns = np.where(checkable, np.floor(np.maximum(limit_s, 0) * _NS_PER_S), 0).astype("int64")
    past_limit_ns = started_ns + limit_ns
    first_tick_ns = offset_ns + ((past_limit_ns - offset_ns) // interval_ns + 1) * interval_ns
    still_running = np.isnat(ended) | (first_tick_ns < ended.view("int64"))
    alerts = checkable & still_running

    first_alert = np.full(len(runs), np.datetime64("NaT", "ns"))
    first_alert[alerts] = first_tick_ns[alerts].view("datetime64[ns]")
    return pd.Series(first_alert, index=runs.index, name="first_alert_at")


def backtest(
    history: pd.DataFrame,
    estimators: Sequence[tuple[str, float]] | None = None,
    window_days: int = WINDOW_DAYS,
    min_runs: int = MIN_RUNS,
    check_interval_s: float = CHECK_INTERVAL_S,
    slowdown_factor: float = 3.0,
    injected_fraction: float = 0.05,
    seed: int = 0,
) -> pd.DataFrame:
    """False alerts, recall and detection delay of each (estimator name, k), replayed day by day.

    `history` is valid runs from `screen_task_runs` (run_id, task_type, started_at, ended_at,
    status, duration_s); only successful runs are used. The result depends on the runs, never on
    the order a database returns them in. `estimators` defaults to every `Estimator` at its
    default k. Days are UTC calendar days; a run belongs to the day it started. The first day is the
    day of the earliest start, and every day from `window_days` after it to the day of the latest
    start is replayed:

    - Fit: each estimator is fitted on `trailing_durations(history, day, window_days)`, the
      successful runs that ended in the `window_days` before the day starts (`min_runs` applies).
    - Injection: the day's n successful runs are ordered by `injection_keys` (a hash of the seed and
      the run id, the same for every estimator). The first injected_fraction * n
      (rounded half up) become slowdowns (duration x slowdown_factor), the next as many become hangs
      (ended_at = the day's end + `HANG_OBSERVED_FOR`); the rest stay as they were. Injected runs
      are never fitted on.
    - Replay: `replay_alerts` with each run's task-type limit, ticks every `check_interval_s` seconds.

    One row per estimator:
    - false_alerts_per_task_type_per_day: alerts on runs that were not injected, divided by
      n_task_days, the number of (task type, day) pairs with at least one successful run.
    - slowdown_recall, hang_recall: alerted injected runs / injected runs of that kind, counting the
      runs whose task type had no limit as missed.
    - slowdown_recall_over_interval: the same over the slowdowns that, slowed, last at least
      `check_interval_s`: the ones the seed's argument says a tick is certain to see at least once
      (not necessarily after they have crossed their limit). Most runs of a busy workflow service
      are short, so slowdown_recall alone mostly counts slowdowns of short tasks that end between
      two ticks, which no estimator can catch.
    - mean_detection_delay_s: over all alerted injected runs, seconds from the moment the run
      crossed its limit (started_at + limit) to the tick that alerted.
    - n_injected_slowdowns, n_injected_hangs: how many runs were injected of each kind.
    """
    require_columns(
        history, ("run_id", "task_type", "started_at", "ended_at", "status", "duration_s"), "history"
    )
    if not 0 <= injected_fraction <= 0.5:
        raise ValueError(
            f"injected_fraction must be in [0, 0.5] (it is taken for slowdowns and again for hangs), "
            f"got {injected_fraction}"
        )
    if estimators is None:
        estimators = [(e.value, DEFAULT_K[e]) for e in Estimator]
    estimators = [(estimator_named(name).value, float(k)) for name, k in estimators]
    history, success = _in_one_order(history)
    success = success.assign(injection_key=injection_keys(success["run_id"], seed))
    started = success["started_at"]
    days = _replayed_days(started, window_days)

    replays: list[list[pd.DataFrame]] = [[] for _ in estimators]
    for day in days:
        day_end = day + pd.Timedelta(days=1)
        runs = success.loc[
            started.ge(day) & started.lt(day_end),
            ["run_id", "task_type", "started_at", "ended_at", "injection_key"],
        ]
        runs = runs.assign(kind="normal").reset_index(drop=True)
        n_injected = int(np.floor(injected_fraction * len(runs) + 0.5))
        order = np.lexsort((runs["run_id"].to_numpy(), runs["injection_key"].to_numpy()))
        slowed, hung = order[:n_injected], order[n_injected : 2 * n_injected]
        durations = runs["ended_at"] - runs["started_at"]
        runs.loc[slowed, "ended_at"] = runs.loc[slowed, "started_at"] + durations[slowed] * slowdown_factor
        runs.loc[hung, "ended_at"] = day_end + HANG_OBSERVED_FOR
        runs.loc[slowed, "kind"] = "slowdown"
        runs.loc[hung, "kind"] = "hang"
        runs["over_interval"] = (runs["ended_at"] - runs["started_at"]).dt.total_seconds() >= check_interval_s
        window = trailing_durations(history, day, window_days)
        for (name, k), replayed in zip(estimators, replays, strict=True):
            baselines = baselines_from_durations(
                window, name, k, min_runs, window_days, check_interval_s
            ).set_index("task_type")
            limit_s = runs["task_type"].map(baselines["upper_limit_s"]).astype("float64")
            alert_at = replay_alerts(runs, limit_s, check_interval_s)
            replayed.append(
                runs[["task_type", "kind", "over_interval"]].assign(
                    day=day,
                    alerted=alert_at.notna(),
                    delay_s=(alert_at - runs["started_at"]).dt.total_seconds() - limit_s,
                )
            )
    rows = [
        _summarise(name, k, pd.concat(replayed, ignore_index=True) if replayed else _EMPTY_REPLAY)
        for (name, k), replayed in zip(estimators, replays, strict=True)
    ]
    return pd.DataFrame(rows, columns=list(BACKTEST_COLUMNS))


def _in_one_order(history: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(history, its successful runs), both in one order whatever order the store returned them in,
    so that the window's sums add up alike too; the successful runs' times in naive UTC."""
    require_columns(
        history, ("run_id", "task_type", "started_at", "ended_at", "status", "duration_s"), "history"
    )
    history = history.assign(run_id=history["run_id"].astype(str)).sort_values(
        ["run_id", "started_at"], ignore_index=True, kind="stable"
    )
    success = history.loc[history["status"].eq("success")].reset_index(drop=True)
    # Stores hand back aware or naive UTC times; the replay works in naive UTC throughout.
    success = success.assign(
        started_at=to_utc_naive(success["started_at"]), ended_at=to_utc_naive(success["ended_at"])
    )
    return history, success


def _replayed_days(started: pd.Series, window_days: float) -> pd.DatetimeIndex:
    """Every UTC day from `window_days` after the day of the first start to the day of the last."""
    if started.empty:
        return pd.DatetimeIndex([])
    first_day = started.min().floor("D")
    return pd.date_range(first_day + pd.Timedelta(days=window_days), started.max().floor("D"), freq="D")


def limits_day_by_day(
    history: pd.DataFrame,
    estimators: Sequence[tuple[str, float | None]],
    window_days: int = WINDOW_DAYS,
    min_runs: int = MIN_RUNS,
    check_interval_s: float = CHECK_INTERVAL_S,
    from_histogram: bool = False,
) -> tuple[pd.DataFrame, np.ndarray]:
    """The successful runs of every replayed day (as `backtest` replays them) and each estimator's
    limit for each of them, fitted on the `window_days` before the run's day: on the window's runs
    (`baselines_from_durations`), or with `from_histogram` as the limits asset fits them, on the
    window's `duration_histogram` (recent: ended in the last days before the day).

    Returns (runs: run_id, task_type, started_at, ended_at, duration_s, day, in start order;
    limits: an array of shape (len(estimators), len(runs)), NaN where the task type had no limit).
    """
    history, success = _in_one_order(history)
    success = success.sort_values(["started_at", "run_id"], ignore_index=True, kind="stable")
    started = success["started_at"]
    days = _replayed_days(started, window_days)
    replayed = success.loc[started.ge(days[0]) if len(days) else started.lt(started.min())]
    replayed = replayed[["run_id", "task_type", "started_at", "ended_at", "duration_s"]].assign(
        day=replayed["started_at"].dt.floor("D")
    )
    replayed = replayed.reset_index(drop=True)
    limits = np.full((len(estimators), len(replayed)), np.nan)
    for day, rows in replayed.groupby("day", sort=True).indices.items():
        window = trailing_durations(history, day, window_days)
        histogram = duration_histogram(window, day) if from_histogram else None
        for i, (name, k) in enumerate(estimators):
            if histogram is not None:
                baselines = baselines_from_histogram(
                    histogram, name, k, min_runs, window_days, check_interval_s
                )
            else:
                baselines = baselines_from_durations(window, name, k, min_runs, window_days, check_interval_s)
            by_type = baselines.set_index("task_type")["upper_limit_s"]
            limits[i, rows] = replayed["task_type"].iloc[rows].map(by_type).to_numpy(dtype="float64")
    return replayed, limits


def injection_keys(run_ids: pd.Series, seed: int) -> np.ndarray:
    """A pseudo-random uint64 per run, from the seed and the run id alone: the runs a backtest
    injects are the same whatever order they come in, and change with the seed."""
    # The seed is an integer, so "seed:" ends at its first colon and no two (seed, run id) collide.
    return np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(f"{int(seed)}:{run_id}".encode(), digest_size=8).digest())
            for run_id in run_ids
        ),
        dtype="uint64",
        count=len(run_ids),
    )


_EMPTY_REPLAY = pd.DataFrame(
    {
        "task_type": pd.Series([], dtype="object"),
        "kind": pd.Series([], dtype="object"),
        "day": pd.Series([], dtype="datetime64[ns]"),
        "over_interval": pd.Series([], dtype=bool),
        "alerted": pd.Series([], dtype=bool),
        "delay_s": pd.Series([], dtype="float64"),
    }
)


def _summarise(name: str, k: float, replay: pd.DataFrame) -> dict[str, object]:
    normal = replay["kind"].eq("normal")
    slowdowns = replay["kind"].eq("slowdown")
    hangs = replay["kind"].eq("hang")
    n_task_days = len(replay[["task_type", "day"]].drop_duplicates())
    n_false_alerts = int((replay["alerted"] & normal).sum())
    return {
        "estimator": name,
        "k": k,
        "false_alerts_per_task_type_per_day": n_false_alerts / n_task_days if n_task_days else np.nan,
        "slowdown_recall": replay.loc[slowdowns, "alerted"].mean(),
        "slowdown_recall_over_interval": replay.loc[slowdowns & replay["over_interval"], "alerted"].mean(),
        "hang_recall": replay.loc[hangs, "alerted"].mean(),
        "mean_detection_delay_s": replay.loc[~normal & replay["alerted"], "delay_s"].mean(),
        "n_task_days": n_task_days,
        "n_injected_slowdowns": int(slowdowns.sum()),
        "n_injected_hangs": int(hangs.sum()),
    }
