"""The error-group catalog: what it costs, and whether a true template keeps one group id across days.

    python bench/catalog.py cost [--days 365] [--groups 2000] [--events 1000000] [--url URL]
    python bench/catalog.py loghub --data ../shared/data/loghub [--slices 7]

`cost`: a year of synthetic history (each day `--groups` clusters of 5 to 20 templates, their events
summing to `--events`) recorded day by day into a fresh catalog (SQLite in a temporary folder, or
`--url`); then, timed: the catalog's input made from one day's report rows (`day_clusters`, one row per
template and cluster, as the clusters asset holds them at a million events), the history's last day
recorded with no checkpoint to go on from (a catalog made before the checkpoint tables: every day
replayed), the newest day recorded (the daily run, going on from the checkpoint), the newest day
recorded again (a re-run of the daily run: from the checkpoint before it), and the oldest day recorded
again (a backfill: every day replayed, every day after it rewritten). Each recording returns
the trend's days, as the error_groups asset asks.

`loghub`: each system's 2,000 messages cut by line order into `--slices` consecutive "days", each day
through the product's chain (`faultline.pipeline.run_day`) and recorded in a catalog; for each true
template (loghub's EventTemplate) seen on two days or more, its group on a day is the group that holds
most of its messages that day, and a template-day keeps its id when that is the template's most common
group. Reported per system: that share, and each day's grouping accuracy (GA) beside it.
Results go to bench/results/catalog_<mode>.json.
"""

import argparse
import json
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from accuracy import find_datasets, grouping_accuracy, load_dataset, message_dump

from faultline.catalog import DEFAULT_TREND_DAYS, CatalogSettings, DayClusters, assign_groups, day_clusters
from faultline.pipeline import DaySettings, run_day, write_parts
from resources.error_catalog import ErrorCatalogStore

RESULTS = Path(__file__).resolve().parent / "results"


def synthetic_year(n_days: int, n_groups: int, n_events: int, seed: int = 1):
    """Per day, the report rows of `n_groups` clusters (5 to 20 templates each, a template's events
    drawn around its group's level) and the day's total, day after day from 2025-01-01."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(5, 21, n_groups)
    weights = rng.pareto(1.2, n_groups) + 0.01
    weights /= weights.sum()
    for d in range(n_days):
        day = (pd.Timestamp("2025-01-01") + pd.Timedelta(days=d)).strftime("%Y-%m-%d")
        group_events = rng.poisson(weights * n_events) + 1
        group_ids = np.repeat(np.arange(n_groups), sizes)
        template_ids = np.concatenate([np.arange(size) for size in sizes])
        shares = rng.dirichlet(np.ones(sizes.max()), n_groups)
        counts = np.maximum(1, (shares[group_ids, template_ids] * group_events[group_ids]).astype(np.int64))
        rows = pd.DataFrame(
            {
                "cluster_id": group_ids,
                "cleaned": [
                    f"group {g} template {t} var" for g, t in zip(group_ids, template_ids, strict=True)
                ],
                # Hints in words: numbers in a hint are masked, which would make them all one hint.
                "hint_text": [f"hint of group {_words(g)}" for g in group_ids],
                "n_events": counts,
            }
        )
        yield day, rows, int(counts.sum())


def _words(number: int) -> str:
    return " ".join("zero one two three four five six seven eight nine".split()[int(c)] for c in str(number))


def cost(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        url = args.url or f"sqlite:///{Path(folder) / 'catalog.db'}"
        store = ErrorCatalogStore(url=url)
        days = list(synthetic_year(args.days, args.groups, args.events))
        started = time.perf_counter()
        inputs = []
        for day, rows, total in days[:-1]:
            inputs.append(day_clusters(day, rows, total))
        made_s = (time.perf_counter() - started) / (len(days) - 1)
        loaded = time.perf_counter()
        # The history's load is not the bar: only the state it leaves.
        for recorded in inputs[:-1]:
            _record_input(store, recorded)
        load_s = time.perf_counter() - loaded
        recent = max(DEFAULT_TREND_DAYS, 2)  # what the error_groups asset reads back
        rebuilt = time.perf_counter()
        store.record_day(inputs[-1], recent_days=recent)
        rebuild_s = time.perf_counter() - rebuilt
        day, rows, total = days[-1]
        t0 = time.perf_counter()
        newest = day_clusters(day, rows, total)
        t1 = time.perf_counter()
        store.record_day(newest, recent_days=recent)
        t2 = time.perf_counter()
        store.record_day(newest, recent_days=recent)
        t2_again = time.perf_counter()
        store.record_day(inputs[0], recent_days=recent)
        t3 = time.perf_counter()
        t4 = time.perf_counter()
        assign_groups([*inputs, newest], CatalogSettings())
        t5 = time.perf_counter()
    return {
        "days": args.days,
        "groups": args.groups,
        "events_per_day": args.events,
        "report_rows_per_day": len(rows),
        "database": url.split(":", 1)[0],
        "day_clusters_s": round(t1 - t0, 3),
        "day_clusters_mean_s": round(made_s, 3),
        "record_last_day_without_checkpoint_s": round(rebuild_s, 3),
        "record_newest_day_s": round(t2 - t1, 3),
        "record_newest_day_again_s": round(t2_again - t2, 3),
        "record_oldest_day_again_s": round(t3 - t2_again, 3),
        "identity_replay_in_memory_s": round(t5 - t4, 3),
        "history_load_s": round(load_s, 1),
    }


def _record_input(store: ErrorCatalogStore, recorded: DayClusters) -> None:
    """A day's clusters and total written as `record_day` writes them, without the recompute: loading
    a year of history one full recompute per day would take the year's square."""
    from resources.error_catalog import clusters_table, days_table

    with store._connect() as connection:
        connection.execute(days_table.insert(), {"day": recorded.day, "n_events": recorded.n_events,
                                                 "recorded_at": datetime.now(UTC)})  # fmt: skip
        connection.execute(
            clusters_table.insert(),
            [
                {"day": recorded.day, "cluster_id": int(c.cluster_id), "n_events": int(c.n_events),
                 "label": c.label, "hint": c.hint, "signature": json.dumps(c.signature)}
                for c in recorded.clusters.itertuples(index=False)
            ],
        )  # fmt: skip
        connection.commit()


def loghub(args: argparse.Namespace) -> dict:
    results = {}
    for system, path in find_datasets(Path(args.data)).items():
        frame = load_dataset(path)
        slices = np.array_split(np.arange(len(frame)), args.slices)
        days, truths, gas = [], [], []
        for n, index in enumerate(slices):
            messages = frame["Content"].iloc[index].reset_index(drop=True)
            truth = frame["EventTemplate"].iloc[index].reset_index(drop=True)
            with tempfile.TemporaryDirectory() as folder:
                dump = write_parts(message_dump(messages), Path(folder) / "dump")
                day = run_day(dump, Path(folder) / "events", DaySettings(workers=1))
            clusters = day.clustered.events["cluster_id"].to_numpy()
            name = f"2026-01-{n + 1:02d}"
            labels = dict(zip(day.report.groups["cluster_id"], day.report.groups["label"], strict=True))
            days.append(day_clusters(name, day.clustered.report_rows, day.report.n_events, labels))
            truths.append(pd.DataFrame({"day": name, "truth": truth, "cluster_id": clusters}))
            gas.append(round(grouping_accuracy(truth, clusters), 3))
        groups = assign_groups(days)
        to_group = {
            (row.day, cluster_id): row.group_id
            for row in groups.itertuples()
            for cluster_id in row.cluster_ids
        }
        events = pd.concat(truths, ignore_index=True)
        events["group"] = [
            to_group.get((d, c)) for d, c in zip(events["day"], events["cluster_id"], strict=True)
        ]
        template_days = (
            events.dropna(subset=["group"])
            .groupby(["truth", "day"])["group"]
            .agg(lambda g: g.value_counts().index[0])
            .reset_index()
        )
        several = template_days.groupby("truth")["day"].transform("size") >= 2
        template_days = template_days[several]
        modal = template_days.groupby("truth")["group"].transform(lambda g: g.value_counts().index[0])
        kept = float((template_days["group"] == modal).mean()) if len(template_days) else 1.0
        results[system] = {
            "template_days": int(len(template_days)),
            "templates_on_several_days": int(template_days["truth"].nunique()),
            "share_keeping_one_id": round(kept, 4),
            "ga_per_day": gas,
        }
        print(system, results[system], flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    modes = parser.add_subparsers(dest="mode", required=True)
    cost_parser = modes.add_parser("cost")
    cost_parser.add_argument("--days", type=int, default=365)
    cost_parser.add_argument("--groups", type=int, default=2_000)
    cost_parser.add_argument("--events", type=int, default=1_000_000)
    cost_parser.add_argument("--url", default=None)
    loghub_parser = modes.add_parser("loghub")
    loghub_parser.add_argument("--data", required=True)
    loghub_parser.add_argument("--slices", type=int, default=7)
    for mode in (cost_parser, loghub_parser):
        mode.add_argument("--output", default=None)
    args = parser.parse_args()
    random.seed(0)
    started = datetime.now(UTC)
    figures = cost(args) if args.mode == "cost" else loghub(args)
    document = {"date": started.isoformat(timespec="seconds"), "argv": sys.argv[1:], "figures": figures}
    output = Path(args.output) if args.output else RESULTS / f"catalog_{args.mode}.json"
    output.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
