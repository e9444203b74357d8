"""How well the error clustering recovers the demo generator's hidden root causes, day by day.

    python bench/demo_recovery.py [--seeds 7 11] [--set dbscan.merge_clusters_sharing_hint=false]

For each generator seed, the demo's 14 days (20,000 error events, as `make demo` seeds them) go
through the product's chain day by day with its default configuration (or `--set` overrides, as
in bench/accuracy.py). Per day: adjusted Rand index against the root causes, clusters, noise, and
the largest gap between a top-5 cause's true share and its group's share. Written to
bench/results/demo_recovery.json.
"""

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from accuracy import faultline_configs
from sklearn.metrics import adjusted_rand_score

from faultline.cleaning import build_corpus
from faultline.clustering import cluster_vectors, label_events, vectorize_texts
from faultline.demo_data.deployment_events import generate_deployment_batches
from faultline.flatten import flatten_batches

RESULTS = Path(__file__).resolve().parent / "results" / "demo_recovery.json"
DEMO_END = datetime(2026, 11, 22, tzinfo=UTC)


def day_figures(events: pd.DataFrame, configs: dict[str, object]) -> dict[str, float]:
    cleaning, doc2vec, dbscan = configs["cleaning"], configs["doc2vec"], configs["dbscan"]
    truth = events["extra"].map(lambda extra: json.loads(extra)["root_cause"]).to_numpy()
    corpus = build_corpus(events, cleaning.template_similarity, cleaning.max_constant_values)
    vectors = vectorize_texts(corpus.variants["cleaned"], corpus.variants["n_events"], **doc2vec.model_dump())
    labels = cluster_vectors(vectors, dbscan.eps, dbscan.min_samples, dbscan.metric, dbscan.center_vectors)
    clusters = label_events(corpus, vectors, labels, dbscan.merge_clusters_sharing_hint)["cluster_id"]
    frame = pd.DataFrame({"truth": truth, "cluster": clusters.to_numpy()})
    share_of_cluster = frame["cluster"].value_counts(normalize=True)
    gaps = []
    for cause, true_share in frame["truth"].value_counts(normalize=True).head(5).items():
        cluster = frame.loc[frame["truth"] == cause, "cluster"].mode()[0]
        gaps.append(abs(share_of_cluster[cluster] - true_share) * 100 if cluster >= 0 else true_share * 100)
    return {
        "events": len(frame),
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
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    configs = faultline_configs(args.set)
    rows = []
    for seed in args.seeds:
        batches = pd.DataFrame(generate_deployment_batches(end=DEMO_END, seed=seed))
        events = flatten_batches(batches).events
        for day, day_events in events.groupby(events["created_at"].map(lambda t: t.strftime("%Y-%m-%d"))):
            rows.append({"seed": seed, "day": day, **day_figures(day_events.reset_index(drop=True), configs)})
            row = rows[-1]
            print(
                f"seed {seed} {day}  {row['events']:>5} events  ARI {row['ari']:.3f}  "
                f"{row['clusters']:>2} clusters / {row['causes']} causes  noise {row['noise_share']:.1%}  "
                f"top-5 share gap {row['top5_max_share_gap_points']:.2f} pts",
                flush=True,
            )
    ari = [row["ari"] for row in rows]
    gaps = [row["top5_max_share_gap_points"] for row in rows]
    summary = {
        "days": len(rows),
        "ari_min": float(np.min(ari)),
        "ari_median": float(np.median(ari)),
        "ari_max": float(np.max(ari)),
        "top5_max_share_gap_points": float(np.max(gaps)),
    }
    print(json.dumps(summary))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    record = {"command": " ".join(["python", *sys.argv]), "overrides": args.set, "summary": summary}
    args.output.write_text(json.dumps(record | {"days": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
