"""Synthetic workflow-service history for the demo: scheduled task runs, some failed, some stuck now.

Durations are lognormal per task type, with medians from 20 seconds to 2 hours; every task type runs
on its own cadence. A few task types have what real runtimes have (`TRAITS`): a heavy right tail,
two modes, a level shift, identical durations. The tasks running at `now` include a known set that
is far past its limit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from faultline.durations import (
    DEFAULT_ESTIMATOR,
    WINDOW_DAYS,
    baselines_from_durations,
    screen_task_runs,
    trailing_durations,
    utc_naive_timestamp,
)

_MIN = 60
_HOUR = 3600
_DAY = 86400

# (task type, median duration s, sigma of log duration, cadence s), ordered so that any prefix
# still spreads from short to long tasks.
TASK_CATALOGUE: tuple[tuple[str, float, float, int], ...] = (
    ("ingest.customer_orders", 45, 0.30, 5 * _MIN),
    ("spark.identity_resolution", 2 * _HOUR, 0.20, _DAY),
    ("dbt.build_marts", 18 * _MIN, 0.25, _HOUR),
    ("ingest.web_events", 20, 0.40, 5 * _MIN),
    ("ml.retrain_propensity", 90 * _MIN, 0.25, _DAY),
    ("dbt.build_staging", 6 * _MIN, 0.30, _HOUR),
    ("ingest.pos_transactions", 90, 0.35, 15 * _MIN),
    ("spark.household_graph", 75 * _MIN, 0.30, 12 * _HOUR),
    ("spark.dedupe_contacts", 25 * _MIN, 0.35, 2 * _HOUR),
    ("ingest.email_engagement", 60, 0.30, 15 * _MIN),
    ("dbt.full_refresh_warehouse", 100 * _MIN, 0.20, _DAY),
    ("dbt.test_marts", 8 * _MIN, 0.25, _HOUR),
    ("ingest.loyalty_points", 30, 0.45, 10 * _MIN),
    ("warehouse.vacuum_analyze", 45 * _MIN, 0.40, _DAY),
    ("spark.address_standardization", 12 * _MIN, 0.30, 2 * _HOUR),
    ("validate.schema_drift", 25, 0.25, 15 * _MIN),
    ("backfill.order_history", 50 * _MIN, 0.35, 12 * _HOUR),
    ("ml.churn_scoring", 15 * _MIN, 0.30, 6 * _HOUR),
    ("export.segment_sync", 2 * _MIN, 0.50, 30 * _MIN),
    ("spark.merge_profiles", 60 * _MIN, 0.25, 6 * _HOUR),
    ("ml.ltv_predictions", 22 * _MIN, 0.20, 6 * _HOUR),
    ("quality.row_count_checks", 40, 0.35, 30 * _MIN),
    ("export.data_lake_parquet", 40 * _MIN, 0.30, 6 * _HOUR),
    ("export.ads_audiences", 10 * _MIN, 0.40, 3 * _HOUR),
    ("api.refresh_tokens", 20, 0.20, 15 * _MIN),
    ("snapshot.customer_360", 30 * _MIN, 0.25, 6 * _HOUR),
    ("export.crm_upsert", 5 * _MIN, 0.45, _HOUR),
    ("cdc.postgres_replication", 35, 0.30, 5 * _MIN),
    ("ingest.clickstream_compaction", 9 * _MIN, 0.35, 3 * _HOUR),
    ("report.daily_revenue", 7 * _MIN, 0.20, _DAY),
    ("notify.digest_emails", 3 * _MIN, 0.30, _HOUR),
    ("index.search_reindex", 14 * _MIN, 0.30, 4 * _HOUR),
)

# What real runtimes look like (issue 14, from WfInstances traces), given to a few task types:
# heavy_tail: 3% of runs take 2-4 times as long; two_modes: a third of runs get an input four times
# as big; level_shift: the input grew LEVEL_SHIFT_DAYS_AGO days before `now`, and runs take three
# times as long since; identical: every run takes the same second (a sub-second task in a store
# that keeps whole seconds).
TRAITS: dict[str, str] = {
    "export.segment_sync": "heavy_tail",
    "spark.dedupe_contacts": "heavy_tail",
    "ingest.clickstream_compaction": "two_modes",
    "dbt.build_staging": "two_modes",
    "dbt.build_marts": "level_shift",
    "api.refresh_tokens": "identical",
}
LEVEL_SHIFT_DAYS_AGO = 3

FAILED_SHARE = 0.03
ABORTED_SHARE = 0.01
# A third of the failures are timeouts that ran many times the usual duration; they are failed, so
# they must not stretch any baseline.
LONG_FAILURE_SHARE = 1 / 3
N_STUCK = 6
STUCK_PAST_LIMIT = (3.0, 6.0)


@dataclass(frozen=True)
class DemoTaskRuns:
    """Generated task runs (run_id, task_type, started_at, ended_at, status) and the runs an overdue
    check at `now` should flag."""

    runs: pd.DataFrame
    expected_overdue_run_ids: set[str]


def _task_types(n_task_types: int) -> list[tuple[str, float, float, int]]:
    """The first n task types of the catalogue, repeated with a shard suffix if more are asked for."""
    size = len(TASK_CATALOGUE)
    types = []
    for i in range(n_task_types):
        name, median_s, sigma, cadence_s = TASK_CATALOGUE[i % size]
        suffix = "" if i < size else f".shard_{i // size}"
        types.append((name + suffix, median_s, sigma, cadence_s))
    return types


def _with_trait(
    trait: str | None, duration: np.ndarray, starts: np.ndarray, horizon_s: float, rng: np.random.Generator
) -> np.ndarray:
    if trait == "heavy_tail":
        return duration * np.where(rng.random(duration.size) < 0.03, rng.uniform(2, 4, duration.size), 1)
    if trait == "two_modes":
        return duration * np.where(rng.random(duration.size) < 1 / 3, 4, 1)
    if trait == "level_shift":
        return duration * np.where(starts >= horizon_s - LEVEL_SHIFT_DAYS_AGO * _DAY, 3, 1)
    if trait == "identical":
        return np.full(duration.size, 1.0)
    return duration


def generate_task_runs(
    now: pd.Timestamp, days: int = WINDOW_DAYS, n_task_types: int = 30, seed: int = 11
) -> DemoTaskRuns:
    """`days` days of scheduled runs of `n_task_types` task types before `now`, deterministic per seed.

    Each task type starts on its cadence (with a random phase and up to 30 s of scheduling delay) and
    runs a lognormal duration, changed by its trait if it has one (`TRAITS`). About 3% of runs fail (a
    third of those after many times the usual duration) and 1% are aborted. A run still going at `now`
    is running; an ordinary one that has already been going longer than its type's median is made to
    have finished shortly before `now`, so that no ordinary run is overdue by accident. Then N_STUCK
    task types, spread from the shortest to the longest, each get a run started 3 to 6 times their limit
    before `now`.

    `expected_overdue_run_ids` are the running runs whose elapsed time at `now` exceeds the limit
    of the deployment's default estimator (`DEFAULT_ESTIMATOR`, at its default k) fitted by
    `baselines_from_durations` on the successful runs of the trailing 14 days; the generator checks
    that these are exactly the stuck runs it planted. Timestamps are naive UTC, whole seconds.
    """
    if n_task_types < N_STUCK:
        raise ValueError(
            f"n_task_types must be at least {N_STUCK} (one per stuck task type), got {n_task_types}"
        )
    now = utc_naive_timestamp(now).floor("s")
    rng = np.random.default_rng(seed)
    catalogue = _task_types(n_task_types)
    horizon_s = days * _DAY

    parts = []
    for name, median_s, sigma, cadence_s in catalogue:
        starts = np.arange(rng.uniform(0, cadence_s), horizon_s, cadence_s)
        starts = np.minimum(starts + rng.uniform(0, min(30, cadence_s / 20), starts.size), horizon_s - 1)
        duration = _with_trait(
            TRAITS.get(name.split(".shard_")[0]),
            median_s * np.exp(sigma * rng.standard_normal(starts.size)),
            starts,
            horizon_s,
            rng,
        )
        draw = rng.random(starts.size)
        status = np.select(
            [draw < FAILED_SHARE, draw < FAILED_SHARE + ABORTED_SHARE], ["failed", "aborted"], "success"
        )
        long_failure = (status == "failed") & (rng.random(starts.size) < LONG_FAILURE_SHARE)
        cut_short = rng.uniform(0.05, 0.9, starts.size)
        duration = np.where(long_failure, duration * rng.uniform(5, 12, starts.size), duration)
        duration = np.where((status != "success") & ~long_failure, duration * cut_short, duration)
        elapsed_at_now = horizon_s - starts
        in_flight = starts + duration > horizon_s
        # A run going longer than its median at `now` would be an accidental anomaly: end it instead.
        finished_early = in_flight & (elapsed_at_now > median_s)
        duration = np.where(finished_early, elapsed_at_now * rng.uniform(0.5, 0.95, starts.size), duration)
        running = in_flight & ~finished_early
        parts.append(
            pd.DataFrame(
                {
                    "task_type": name,
                    "start_s": np.floor(starts),
                    "end_s": np.where(running, np.nan, np.floor(starts) + np.maximum(np.round(duration), 1)),
                    "status": np.where(running, "running", status),
                }
            )
        )
    scheduled = pd.concat(parts, ignore_index=True)
    history_start = now - pd.Timedelta(seconds=horizon_s)
    scheduled = pd.DataFrame(
        {
            "task_type": scheduled["task_type"],
            "started_at": history_start + pd.to_timedelta(scheduled["start_s"], unit="s"),
            "ended_at": history_start + pd.to_timedelta(scheduled["end_s"], unit="s"),
            "status": scheduled["status"],
        }
    )

    valid, _ = screen_task_runs(scheduled.assign(run_id="scheduled"), now)
    limits = (
        baselines_from_durations(trailing_durations(valid, now, WINDOW_DAYS), DEFAULT_ESTIMATOR)
        .set_index("task_type")["upper_limit_s"]
        .dropna()
    )
    by_median = sorted((median_s, name) for name, median_s, _, _ in catalogue if name in limits.index)
    picks = np.unique(np.linspace(0, len(by_median) - 1, N_STUCK).round().astype(int))
    stuck_types = [by_median[i][1] for i in picks]
    stuck_elapsed_s = np.round(limits[stuck_types].to_numpy() * rng.uniform(*STUCK_PAST_LIMIT, len(picks)))
    stuck = pd.DataFrame(
        {
            "task_type": stuck_types,
            "started_at": now - pd.to_timedelta(stuck_elapsed_s, unit="s"),
            "ended_at": pd.NaT,
            "status": "running",
        }
    )

    runs = pd.concat(
        [scheduled.assign(planted=False), stuck.astype(scheduled.dtypes.to_dict()).assign(planted=True)],
        ignore_index=True,
    )
    runs = runs.sort_values(["started_at", "task_type"], ignore_index=True, kind="stable")
    runs.insert(0, "run_id", [f"run-{i:07d}" for i in range(len(runs))])

    running = runs[runs["status"].eq("running")]
    elapsed_s = (now - running["started_at"]).dt.total_seconds()
    over = elapsed_s > running["task_type"].map(limits)
    expected = set(running.loc[over, "run_id"])
    planted = set(runs.loc[runs["planted"], "run_id"])
    if expected != planted:
        raise RuntimeError(
            f"demo data for seed {seed}: the runs over their limit at now ({sorted(expected)}) are not the "
            f"planted stuck runs ({sorted(planted)}); pick another seed"
        )
    return DemoTaskRuns(runs=runs.drop(columns="planted"), expected_overdue_run_ids=expected)
