"""How well the error clustering recovers the demo generator's hidden root causes, day by day.

    python bench/demo_recovery.py [--seeds 7 11] [--set dbscan.merge_clusters_sharing_hint=false]
                                  [--strip-hints]

For each generator seed, the demo's 14 days (20,000 error events, as `make demo` seeds them) go
through the product's chain (`faultline.pipeline.run_day`) day by day, from the day's rows as the
dump holds them, with its default configuration (or `--set` overrides, as in bench/accuracy.py).
Per day: adjusted Rand index against the root causes, clusters, noise, and the largest gap between
a top-5 cause's true share and its group's share.

The generator gives every error message a hint, and each hint belongs to one cause only, so the
hint merge (and the hint's words in the text clustered) recover the causes partly by construction.
`--strip-hints` removes the hint from every message first: the groups then come from the error
messages alone. Written to bench/results/demo_recovery.json (demo_recovery_hints_stripped.json with
--strip-hints) unless --output says otherwise.
"""

import argparse
import json
import re
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from accuracy import day_settings, faultline_configs
from sklearn.metrics import adjusted_rand_score

from faultline.cleaning import extract_hint
from faultline.demo_data.deployment_events import generate_deployment_batches
from faultline.pipeline import DaySettings, run_day, write_parts
from resources.event_store import DUMP_COLUMNS

RESULTS = Path(__file__).resolve().parent / "results"
DEMO_END = datetime(2026, 11, 22, tzinfo=UTC)
# The framing's hint: from the line labelled "Hint:" (after an emoji and spaces) to the message's end.
_HINT = re.compile(r"^[^\n]{0,6}?hint:.*\Z", re.I | re.M | re.S)


def day_dumps(seed: int) -> Iterator[tuple[str, pd.DataFrame]]:
    """The demo store's rows, day by day, as each day's dump holds them."""
    rows = pd.DataFrame(generate_deployment_batches(end=DEMO_END, seed=seed), columns=DUMP_COLUMNS)
    for day, dump in rows.groupby(rows["created_at"].map(lambda t: t.strftime("%Y-%m-%d"))):
        yield day, dump.reset_index(drop=True)


def without_hint(message: str) -> str:
    stripped = _HINT.sub("", message)
    if extract_hint(stripped):
        raise SystemExit(f"a hint is left after stripping it from: {message[:300]!r}")
    return stripped


def strip_hints(dump: pd.DataFrame) -> pd.DataFrame:
    """The dump with the hint cut from every event's message."""
    batches = [json.loads(payload) for payload in dump["payload"]]
    for events in batches:
        for event in events:
            event["message"] = without_hint(event["message"])
    return dump.assign(payload=[json.dumps(events) for events in batches])


def day_figures(dump: pd.DataFrame, settings: DaySettings) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        day = run_day(write_parts(dump, Path(folder) / "dump"), Path(folder) / "flattened_events", settings)
        truth = day.events.to_frame()["extra"].map(lambda extra: json.loads(extra)["root_cause"])
    clusters = day.clustered.events["cluster_id"]
    frame = pd.DataFrame({"truth": truth.to_numpy(), "cluster": clusters.to_numpy()})
    share_of_cluster = frame["cluster"].value_counts(normalize=True)
    gaps = []
    for cause, true_share in frame["truth"].value_counts(normalize=True).head(5).items():
        cluster = frame.loc[frame["truth"] == cause, "cluster"].mode()[0]
        gaps.append(abs(share_of_cluster[cluster] - true_share) * 100 if cluster >= 0 else true_share * 100)
    return {
        "events": len(frame),
        "events_with_a_hint": int(day.corpus.hints.loc[day.corpus.hints["hint"] != "", "n_events"].sum()),
        "ari": float(adjusted_rand_score(frame["truth"], frame["cluster"])),
        "clusters": int(frame.loc[frame["cluster"] >= 0, "cluster"].nunique()),
        "causes": int(frame["truth"].nunique()),
        "noise_share": float((frame["cluster"] < 0).mean()),
        "top5_max_share_gap_points": float(max(gaps)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 11])
    parser.add_argument("--set", nargs="*", default=[], metavar="SECTION.FIELD=VALUE")
    parser.add_argument(
        "--strip-hints", action="store_true", help="cut the hint from every message before the chain"
    )
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    output = args.output or RESULTS / (
        "demo_recovery_hints_stripped.json" if args.strip_hints else "demo_recovery.json"
    )
    settings = day_settings(faultline_configs(args.set))
    rows = []
    for seed in args.seeds:
        for day, dump in day_dumps(seed):
            dump = strip_hints(dump) if args.strip_hints else dump
            rows.append({"seed": seed, "day": day, **day_figures(dump, settings)})
            row = rows[-1]
            print(
                f"seed {seed} {day}  {row['events']:>5} events ({row['events_with_a_hint']:>5} with a hint)  "
                f"ARI {row['ari']:.3f}  {row['clusters']:>2} clusters / {row['causes']} causes  "
                f"noise {row['noise_share']:.1%}  top-5 share gap {row['top5_max_share_gap_points']:.2f} pts",
                flush=True,
            )
    ari = [row["ari"] for row in rows]
    clusters = [row["clusters"] for row in rows]
    summary = {
        "days": len(rows),
        "hints": "stripped" if args.strip_hints else "kept",
        "events_with_a_hint": int(sum(row["events_with_a_hint"] for row in rows)),
        "events": int(sum(row["events"] for row in rows)),
        "ari_min": float(np.min(ari)),
        "ari_median": float(np.median(ari)),
        "ari_max": float(np.max(ari)),
        "clusters_min": int(np.min(clusters)),
        "clusters_max": int(np.max(clusters)),
        "top5_max_share_gap_points": float(np.max([row["top5_max_share_gap_points"] for row in rows])),
    }
    print(json.dumps(summary))
    output.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "command": " ".join(["python", "bench/demo_recovery.py", *sys.argv[1:]]),
        "overrides": args.set,
        "strip_hints": args.strip_hints,
        "summary": summary,
    }
    output.write_text(json.dumps(record | {"days": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
