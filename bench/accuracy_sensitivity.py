"""How much faultline's loghub accuracy depends on each default: one setting changed at a time.

    python bench/accuracy_sensitivity.py --data ../shared/data/loghub

Each row is faultline's pipeline with its default configuration and one `--set`-style override
(see bench/accuracy.py); mean grouping accuracy over every dataset in --data and per dataset.
Written to bench/results/accuracy_sensitivity.json.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from accuracy import faultline_configs, faultline_groups, find_datasets, grouping_accuracy, load_dataset

RESULTS = Path(__file__).resolve().parent / "results" / "accuracy_sensitivity.json"
# Each default's neighbours, and the seed's values for DBSCAN (on raw vectors, no hint merge needed here:
# loghub messages carry no hint).
VARIANTS: dict[str, list[str]] = {
    "default": [],
    "max_constant_values=0 (no split)": ["cleaning.max_constant_values=0"],
    "max_constant_values=2": ["cleaning.max_constant_values=2"],
    "max_constant_values=4": ["cleaning.max_constant_values=4"],
    "max_constant_values=5": ["cleaning.max_constant_values=5"],
    "template_similarity=0.4 (Drain3's)": ["cleaning.template_similarity=0.4"],
    "template_similarity=0.6": ["cleaning.template_similarity=0.6"],
    "eps=0.01": ["dbscan.eps=0.01"],
    "eps=0.05": ["dbscan.eps=0.05"],
    "eps=0.1": ["dbscan.eps=0.1"],
    "min_samples=5 (the seed's)": ["dbscan.min_samples=5"],
    "center_vectors=false": ["dbscan.center_vectors=false"],
    "the seed's DBSCAN (0.2, 5, raw vectors)": [
        "dbscan.eps=0.2",
        "dbscan.min_samples=5",
        "dbscan.center_vectors=false",
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of loghub-2k dataset folders")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    frames = {system: load_dataset(path) for system, path in find_datasets(args.data).items()}
    rows = []
    for name, overrides in VARIANTS.items():
        configs = faultline_configs(overrides)
        started = time.perf_counter()
        ga = {
            system: grouping_accuracy(frame["EventTemplate"], faultline_groups(frame["Content"], configs))
            for system, frame in frames.items()
        }
        rows.append(
            {
                "variant": name,
                "overrides": overrides,
                "mean_ga": float(np.mean(list(ga.values()))),
                "ga": ga,
                "seconds": time.perf_counter() - started,
            }
        )
        per_system = "  ".join(f"{system} {value:.3f}" for system, value in ga.items())
        print(f"{name:<42} mean GA {rows[-1]['mean_ga']:.3f}  |  {per_system}", flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps({"command": " ".join(["python", *sys.argv]), "rows": rows}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
