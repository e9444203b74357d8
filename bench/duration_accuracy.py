"""How well each duration estimator alerts on real task runtimes, replayed at the sensor's cadence.

    python bench/duration_accuracy.py --data ../shared/data/wfinstances/task_runtimes.csv.gz

`--data` is a CSV (gzip or not) of the WfInstances layout: task_type, order_in_type, runtime_s (other
columns are ignored), any number of task types. As that data's README says, each task type's runs
are laid out evenly over six weeks in `order_in_type`: 14 days of history, then 28 days replayed.
Each replayed day, each estimator is fitted on the 14 days before it by the product's own code
(`faultline.backtest.limits_day_by_day`, which fits the window's histogram with
`baselines_from_histogram` as the limits asset does; how far those limits are from the exact fit on
every run, `baselines_from_durations`, is reported too),
and every replayed run is checked at the sensor's 10-minute ticks (`replay_alerts`) as it was, and
again slowed 2x, 3x and 5x, and hung (still running a day after its day ends).

Figures per estimator, at its default knob and at a matched false-alert rate (the knob tuned so
that 1% of normal runs last longer than their limit, since comparing at fixed knobs is unfair):
alerts on normal runs per task type per day, share of normal runs over the limit, recall of the
slowdowns and of hangs (overall and over the slowed runs lasting at least 10 minutes, the ones a
tick is sure to see), detection delay, and the false alerts per task type per 30 days (each day's
limits learned only from the days before it: the alert budget, scored out of sample). Writes
bench/results/duration_accuracy.json (`--output`) and prints a table.
"""

import argparse
import json
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faultline.backtest import HANG_OBSERVED_FOR, limits_day_by_day, replay_alerts  # noqa: E402
from faultline.durations import (  # noqa: E402
    CHECK_INTERVAL_S,
    DAYS_PER_MONTH,
    DEFAULT_ESTIMATOR,
    DEFAULT_K,
    WINDOW_DAYS,
    Estimator,
    screen_task_runs,
)

ROOT = Path(__file__).resolve().parents[1]
REPLAYED_DAYS = 28
# Any fixed Monday: the layout's first day. Ticks fall every 600 s from the epoch, as the sensor's.
LAYOUT_START = pd.Timestamp("2026-01-05")
SLOWDOWNS = (2.0, 3.0, 5.0)
MATCHED_OVER_LIMIT_SHARE = 0.01
# Where each knob is searched for the matched rate, and whether a larger knob raises the limit.
KNOB_RANGE = {
    Estimator.MEAN_STD: (0.0, 50.0, True),
    Estimator.LOG_MAD: (0.0, 50.0, True),
    Estimator.QUANTILE: (0.05, 20.0, True),
    Estimator.ALERT_BUDGET: (1e-4, 1e4, False),
}
BISECTION_STEPS = 18


def laid_out_runs(path: Path) -> pd.DataFrame:
    """The runs of `path` as task runs: each type's runs evenly over the history and replayed days."""
    data = pd.read_csv(path, usecols=["task_type", "order_in_type", "runtime_s"])
    data = data.sort_values(["task_type", "order_in_type"], ignore_index=True, kind="stable")
    position = data.groupby("task_type").cumcount()
    count = data.groupby("task_type")["task_type"].transform("size")
    span = pd.Timedelta(days=WINDOW_DAYS + REPLAYED_DAYS)
    started = LAYOUT_START + (span * (position / count)).dt.floor("ms")
    runs = pd.DataFrame(
        {
            "run_id": data["task_type"] + "#" + data["order_in_type"].astype(str),
            "task_type": data["task_type"],
            "started_at": started,
            "ended_at": started + pd.to_timedelta(data["runtime_s"], unit="s"),
            "status": "success",
        }
    )
    valid, rejected = screen_task_runs(runs, LAYOUT_START + span + pd.Timedelta(days=1))
    if len(rejected):
        print(f"{len(rejected)} runs rejected: {rejected['reason'].value_counts().to_dict()}")
    return valid


def replayed(runs: pd.DataFrame, limit_s: np.ndarray) -> dict[str, np.ndarray]:
    """Per run: over its limit, alerted as it was, alerted slowed by each factor, alerted hung."""
    started = runs["started_at"]
    duration = runs["duration_s"].to_numpy()
    outcome = {"over_limit": duration > limit_s}
    alert_at = replay_alerts(runs, limit_s, CHECK_INTERVAL_S)
    outcome["alerted"] = alert_at.notna().to_numpy()
    for factor in SLOWDOWNS:
        slowed = runs.assign(ended_at=started + pd.to_timedelta(duration * factor, unit="s"))
        at = replay_alerts(slowed, limit_s, CHECK_INTERVAL_S)
        outcome[f"slowed_{factor:g}x"] = at.notna().to_numpy()
        outcome[f"long_{factor:g}x"] = duration * factor >= CHECK_INTERVAL_S
        past_limit = (at - started).dt.total_seconds().to_numpy() - limit_s
        # The chance a tick at a uniformly random phase sees the slowed run past its limit: the
        # recall without the luck of where this layout's starts fall between the ticks.
        outcome[f"seen_{factor:g}x"] = np.clip((duration * factor - limit_s) / CHECK_INTERVAL_S, 0, 1)
        outcome[f"delay_{factor:g}x"] = past_limit
    hung = runs.assign(ended_at=runs["day"] + pd.Timedelta(days=1) + HANG_OBSERVED_FOR)
    at = replay_alerts(hung, limit_s, CHECK_INTERVAL_S)
    outcome["hang"] = at.notna().to_numpy()
    outcome["hang_found_after_s"] = (at - started).dt.total_seconds().to_numpy()
    return outcome


def figures(runs: pd.DataFrame, limit_s: np.ndarray) -> dict[str, float]:
    outcome = replayed(runs, limit_s)
    n_task_types = runs["task_type"].nunique()
    n_days = runs["day"].nunique()
    alerts_per_type = pd.Series(outcome["alerted"]).groupby(runs["task_type"].to_numpy()).sum()
    per_month = alerts_per_type / n_days * DAYS_PER_MONTH
    row: dict[str, float] = {
        "alerts_per_task_type_per_day": float(outcome["alerted"].sum() / (n_task_types * n_days)),
        "normal_over_limit_share": float(outcome["over_limit"].mean()),
        "false_alerts_per_task_type_per_month": float(per_month.mean()),
        "task_types_over_1_false_alert_per_month": int((per_month > 1).sum()),
        "worst_task_type_false_alerts_per_month": float(per_month.max()),
        "false_alerts_per_month_by_task_type": {name: round(float(v), 2) for name, v in per_month.items()},
    }
    for factor in SLOWDOWNS:
        caught, long = outcome[f"slowed_{factor:g}x"], outcome[f"long_{factor:g}x"]
        row[f"recall_{factor:g}x"] = float(caught.mean())
        row[f"recall_{factor:g}x_over_10_min"] = float(caught[long].mean()) if long.any() else float("nan")
        seen = np.nan_to_num(outcome[f"seen_{factor:g}x"])
        row[f"recall_{factor:g}x_over_10_min_any_phase"] = (
            float(seen[long].mean()) if long.any() else float("nan")
        )
    row["hang_recall"] = float(outcome["hang"].mean())
    row["mean_delay_past_limit_3x_s"] = float(
        np.nanmean(np.where(outcome["slowed_3x"], outcome["delay_3x"], np.nan))
    )
    row["median_hang_found_after_s"] = float(np.nanmedian(outcome["hang_found_after_s"]))
    row["n_long_3x"] = int(outcome["long_3x"].sum())
    return row


def matched_knob(history: pd.DataFrame, estimator: Estimator) -> tuple[float, pd.DataFrame, np.ndarray]:
    """The knob at which MATCHED_OVER_LIMIT_SHARE of normal runs last longer than their limit."""
    low, high, raises_limit = KNOB_RANGE[estimator]
    geometric = estimator is Estimator.ALERT_BUDGET

    def share(knob: float) -> tuple[float, pd.DataFrame, np.ndarray]:
        runs, limits = limits_day_by_day(history, [(estimator.value, knob)], from_histogram=True)
        return float((runs["duration_s"].to_numpy() > limits[0]).mean()), runs, limits

    best = None
    for _ in range(BISECTION_STEPS):
        knob = float(np.sqrt(low * high)) if geometric else (low + high) / 2
        over, runs, limits = share(knob)
        best = (knob, runs, limits[0])
        # Too many runs over the limit: raise the limit.
        if (over > MATCHED_OVER_LIMIT_SHARE) == raises_limit:
            low = knob
        else:
            high = knob
    return best


def table(rows: list[dict]) -> str:
    columns = [
        ("estimator", "estimator"), ("k", "k"), ("alerts/type/day", "alerts_per_task_type_per_day"),
        ("over limit", "normal_over_limit_share"), ("2x", "recall_2x"), ("3x", "recall_3x"),
        ("5x", "recall_5x"), ("3x>=10min", "recall_3x_over_10_min"), ("5x>=10min", "recall_5x_over_10_min"),
        ("3x>=10min any phase", "recall_3x_over_10_min_any_phase"),
        ("hangs", "hang_recall"), ("hang found s", "median_hang_found_after_s"),
        ("FA/type/month", "false_alerts_per_task_type_per_month"),
        ("types >1/month", "task_types_over_1_false_alert_per_month"),
    ]  # fmt: skip
    lines = [" | ".join(title for title, _ in columns)]
    for row in rows:
        cells = []
        for _, key in columns:
            value = row[key]
            cells.append(f"{value:.4g}" if isinstance(value, float) else str(value))
        lines.append(" | ".join(cells) + (" (default)" if row.get("default") else ""))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, required=True, help="a CSV of task_type, order_in_type, runtime_s"
    )
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "duration_accuracy.json")
    args = parser.parse_args()
    if args.data.is_dir():
        args.data = args.data / "task_runtimes.csv.gz"
    began = time.monotonic()
    history = laid_out_runs(args.data)
    print(f"{len(history)} runs of {history['task_type'].nunique()} task types from {args.data}")

    at_defaults, at_matched = [], []
    estimators = list(Estimator)
    defaults = [(e.value, DEFAULT_K[e]) for e in estimators]
    runs, limits = limits_day_by_day(history, defaults, from_histogram=True)
    _, exact_limits = limits_day_by_day(history, defaults)
    agreement = {}
    for estimator, summed, exact in zip(estimators, limits, exact_limits, strict=True):
        relative = np.abs(summed / exact - 1)[np.isfinite(exact)]
        agreement[estimator.value] = {
            "median": float(np.median(relative)), "p99": float(np.quantile(relative, 0.99)),
            "max": float(relative.max()), "share_over_1_percent": float((relative > 0.01).mean()),
        }  # fmt: skip
    print("\nLimits from the histogram (as the asset fits them) against the exact fit on every run, relative "
          "difference over the replayed runs:")  # fmt: skip
    for name, figures_of in agreement.items():
        print(f"  {name}: " + ", ".join(f"{key} {value:.2%}" for key, value in figures_of.items()))
    for estimator, limit_s in zip(estimators, limits, strict=True):
        row = {"estimator": estimator.value, "k": DEFAULT_K[estimator], **figures(runs, limit_s)}
        at_defaults.append(row | ({"default": True} if estimator is DEFAULT_ESTIMATOR else {}))
    print("\nAt each estimator's default k:\n" + table(at_defaults))
    for estimator in estimators:
        knob, matched_runs, limit_s = matched_knob(history, estimator)
        row = {"estimator": estimator.value, "k": round(knob, 4), **figures(matched_runs, limit_s)}
        at_matched.append(row | ({"default": True} if estimator is DEFAULT_ESTIMATOR else {}))
    print(
        f"\nAt a matched rate ({MATCHED_OVER_LIMIT_SHARE:.0%} of normal runs over the limit):\n"
        + table(at_matched)
    )

    result = {
        "command": f"python bench/duration_accuracy.py --data {args.data}",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip(),
        "machine": platform.platform(),
        "data": str(args.data),
        "n_runs": len(history),
        "n_replayed_runs": len(runs),
        "n_task_types": int(history["task_type"].nunique()),
        "layout": f"each task type's runs evenly over {WINDOW_DAYS} + {REPLAYED_DAYS} days in order_in_type",
        "check_interval_s": CHECK_INTERVAL_S,
        "matched_over_limit_share": MATCHED_OVER_LIMIT_SHARE,
        "fit": "baselines_from_histogram on each window's duration_histogram, as the limits asset fits them",
        "limits_histogram_vs_exact": agreement,
        "at_defaults": at_defaults,
        "at_matched_rate": at_matched,
        "seconds": round(time.monotonic() - began, 1),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2, allow_nan=True) + "\n")
    print(f"\nWritten to {args.output} in {result['seconds']} s")


if __name__ == "__main__":
    main()
