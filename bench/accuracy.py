"""How right the error clustering is on real labelled logs (loghub-2k), beside Drain3 and the seed's pipeline.

    python bench/accuracy.py --data ../shared/data/loghub

Every dataset folder in --data is scored with faultline's one default configuration (no per-dataset
settings): grouping accuracy, adjusted Rand index, the ten largest true groups recovered exactly,
and wall seconds; per dataset, on average, and on a development / held-out split of the systems.

The same messages in other shapes, side by side (issue 17: sources other than Qovery's engine):

    python bench/accuracy.py --data ../shared/data/loghub \
        --methods faultline,faultline_event,faultline_generic --output bench/results/accuracy_shapes.json

`faultline_event` gives each message as one JSON object per row under other field names
(`{"ts": ..., "level": "ERROR", "log": {"text": message}}`, message_field log.text, every event an
error) cleaned by the `generic` profile; `faultline_generic` the batched Qovery shape with the
`generic` profile, to see what Qovery's rules do to messages that carry no Qovery framing.
"""

import argparse
import dataclasses
import datetime as dt
import hashlib
import importlib.metadata
import inspect
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from baselines import SEED_DBSCAN, SEED_DOC2VEC, drain3_groups, require_drain3, seed_groups
from sklearn.metrics import adjusted_rand_score

import faultline
from assets.error_clusters import CleaningConfig, DBSCANConfig, Doc2VecConfig, FlattenConfig
from faultline.pipeline import DaySettings, run_day, write_parts

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
DEFAULT_OUTPUT = BENCH / "results" / "accuracy.json"
# Chosen before any tuning, so that the other four stay unseen while faultline's defaults change.
DEFAULT_DEV_SYSTEMS = ("Apache", "BGL", "HDFS", "Hadoop")
TOP_K = 10
METHODS = ("faultline", "faultline_event", "faultline_generic", "drain3", "seed")
METHOD_DESCRIPTIONS = {
    "faultline": "faultline's chain of the error_clusters assets (faultline.pipeline.run_day) with the "
    "default Config, each message one error event of a dump",
    "faultline_event": "faultline as above, each message one JSON object per row "
    '({"ts": ..., "level": "ERROR", "log": {"text": message}}) read with flatten.layout=event, '
    "message_field=log.text, state_field=level, scope_field empty, every_event_is_error=true, and "
    "cleaning.profile=generic",
    "faultline_generic": "faultline as above, the batched Qovery shape, cleaning.profile=generic",
    "drain3": "Drain3 TemplateMiner, default config plus the masking of Drain3's examples/drain3.ini",
    "seed": "the seed's pipeline as written: naive cleaning, Doc2Vec 80/2/1/1000 on every message, "
    "DBSCAN 0.2/5/cosine on the vectors",
}


CONFIG_SECTIONS = {
    "flatten": FlattenConfig,
    "cleaning": CleaningConfig,
    "doc2vec": Doc2VecConfig,
    "dbscan": DBSCANConfig,
}
# What faultline_event and faultline_generic set over the configuration the run was given.
ONE_EVENT_PER_ROW = [
    "flatten.layout=event",
    "flatten.message_field=log.text",
    "flatten.state_field=level",
    "flatten.scope_field=",
    "flatten.every_event_is_error=true",
    "cleaning.profile=generic",
]
GENERIC_PROFILE = ["cleaning.profile=generic"]


def faultline_configs(overrides: list[str] | None = None) -> dict[str, object]:
    """The product's Config for each stage, with `section.field=value` overrides (a JSON value or text).

    With no override this is the one default configuration the product ships; overrides exist for
    sensitivity runs and to put the seed's values in, e.g. `dbscan.eps=0.2 dbscan.min_samples=5`.
    """
    fields: dict[str, dict[str, object]] = {section: {} for section in CONFIG_SECTIONS}
    for override in overrides or []:
        key, _, text = override.partition("=")
        section, _, name = key.partition(".")
        if section not in CONFIG_SECTIONS or name not in CONFIG_SECTIONS[section].model_fields:
            raise SystemExit(
                f"--set {override}: expected section.field=value, section in {', '.join(CONFIG_SECTIONS)}"
            )
        try:
            fields[section][name] = json.loads(text) if text else text
        except json.JSONDecodeError:
            fields[section][name] = text
    return {section: config(**fields[section]) for section, config in CONFIG_SECTIONS.items()}


def day_settings(configs: dict[str, object]) -> DaySettings:
    """The chain's settings from the Config of each section; what no section holds keeps its default."""
    names = {setting.name for setting in dataclasses.fields(DaySettings)}
    return DaySettings(
        **{
            name: tuple(value) if isinstance(value, list) else value
            for config in configs.values()
            for name, value in config.model_dump().items()
            if name in names
        }
    )


def message_dump(messages: pd.Series, layout: str = "batched") -> pd.DataFrame:
    """The messages as the rows of a dump, in their order: a batch of one error event each, or with
    layout "event" one log line each, the message at log.text."""
    created_at = pd.Timestamp("2026-01-01", tz="UTC")
    if layout == "event":
        payloads = [
            json.dumps({"ts": f"2026-01-01T00:00:{n % 60:02d}Z", "level": "ERROR", "log": {"text": message}})
            for n, message in enumerate(messages.astype(str))
        ]
    else:
        payloads = [
            json.dumps([{"scope": "LOG", "state": "DEPLOYMENT_ERROR", "message": message}])
            for message in messages.astype(str)
        ]
    return pd.DataFrame(
        {"id": np.arange(1, len(messages) + 1), "created_at": created_at, "payload": payloads}
    )


def faultline_groups(messages: pd.Series, configs: dict[str, object] | None = None) -> np.ndarray:
    """Each message's cluster id from the product's chain, `faultline.pipeline.run_day`, which the assets
    run step by step: the messages, as a dump, are flattened (and so redacted), cleaned, vectorized and
    clustered with the Config of each step (the defaults unless `configs` says otherwise), and the
    report made. Noise is -1 and no text -2, as in the product.
    """
    configs = configs or faultline_configs()
    with tempfile.TemporaryDirectory() as folder:
        dump = write_parts(
            message_dump(messages, configs.get("flatten", FlattenConfig()).layout), Path(folder) / "dump"
        )
        day = run_day(dump, Path(folder) / "flattened_events", day_settings(configs))
    clusters = day.clustered.events
    if len(clusters) != len(messages):
        raise SystemExit(
            f"{len(messages) - len(clusters)} of {len(messages)} messages were quarantined "
            f"({day.flattened.quarantine['reason'].value_counts().to_dict()}); the scores would be wrong"
        )
    return clusters["cluster_id"].to_numpy(dtype=np.int64)


def ungrouped_as_singletons(labels: np.ndarray) -> np.ndarray:
    """Labels where every negative label (noise, no text) becomes a group of its own.

    Noise is "in no group", not one big group: scored as one it would be rewarded whenever the
    noise happened to be a single true group, and blamed as one wrong group otherwise.
    """
    labels = np.asarray(labels, dtype=np.int64).copy()
    ungrouped = labels < 0
    labels[ungrouped] = labels.max(initial=-1) + 1 + np.arange(int(ungrouped.sum()))
    return labels


def grouping_accuracy(truth: pd.Series, predicted: np.ndarray) -> float:
    """Share of messages whose predicted group holds exactly the messages of their true group.

    Zhu et al. 2019 ("Tools and Benchmarks for Automated Log Parsing"), as loghub's evaluator
    computes it: a predicted group counts, with all its messages, when its messages have one true
    template and that template has no other message.
    """
    frame = pd.DataFrame({"truth": truth.to_numpy(), "predicted": ungrouped_as_singletons(predicted)})
    true_sizes = frame["truth"].value_counts()
    correct = 0
    for _, group in frame.groupby("predicted"):
        templates = group["truth"].unique()
        if len(templates) == 1 and true_sizes[templates[0]] == len(group):
            correct += len(group)
    return correct / len(frame) if len(frame) else 1.0


def largest_groups_recovered(truth: pd.Series, predicted: np.ndarray, k: int = TOP_K) -> tuple[int, int]:
    """How many of the k largest true groups are exactly one predicted group, and of how many.

    Ties in size are broken by template text, so the count does not depend on row order.
    """
    frame = pd.DataFrame({"truth": truth.to_numpy(), "predicted": ungrouped_as_singletons(predicted)})
    predicted_sizes = frame["predicted"].value_counts()
    sizes = frame["truth"].value_counts().rename("size").reset_index()
    largest = sizes.sort_values(["size", "truth"], ascending=[False, True]).head(k)
    recovered = 0
    for template, size in largest.itertuples(index=False):
        labels = frame.loc[frame["truth"] == template, "predicted"].unique()
        if len(labels) == 1 and predicted_sizes[labels[0]] == size:
            recovered += 1
    return recovered, len(largest)


def score(truth: pd.Series, predicted: np.ndarray, seconds: float) -> dict[str, float | int]:
    recovered, of = largest_groups_recovered(truth, predicted)
    return {
        "ga": grouping_accuracy(truth, predicted),
        "ari": float(adjusted_rand_score(truth, ungrouped_as_singletons(predicted))),
        "top10_recovered": recovered,
        "top10_of": of,
        "n_groups": int(len(np.unique(predicted[predicted >= 0]))),
        "ungrouped_share": float((predicted < 0).mean()) if len(predicted) else 0.0,
        "seconds": seconds,
    }


def find_datasets(data: Path) -> dict[str, Path]:
    """System name -> its structured CSV, for every folder laid out as loghub-2k."""
    if not data.is_dir():
        raise SystemExit(f"--data {data}: no such folder; give the folder that holds the loghub-2k systems")
    found = {
        folder.name: folder / f"{folder.name}_2k.log_structured.csv"
        for folder in sorted(data.iterdir())
        if (folder / f"{folder.name}_2k.log_structured.csv").is_file()
    }
    if not found:
        raise SystemExit(
            f"--data {data}: no dataset folder in it; each must hold <System>/<System>_2k.log_structured.csv"
        )
    return found


def load_dataset(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = {"Content", "EventTemplate"} - set(frame.columns)
    if missing:
        raise SystemExit(f"{path}: no column {', '.join(sorted(missing))}; expected loghub's structured CSV")
    return frame


def run(
    datasets: dict[str, Path], methods: dict[str, Callable[[pd.Series], np.ndarray]]
) -> list[dict[str, object]]:
    results: list[dict[str, object]] = []
    for system, path in datasets.items():
        frame = load_dataset(path)
        entry: dict[str, object] = {
            "system": system,
            "n_messages": len(frame),
            "n_true_groups": int(frame["EventTemplate"].nunique()),
            "results": {},
        }
        for name, method in methods.items():
            # Wall time of the whole method, cleaning included, as a user would wait for it.
            start = time.perf_counter()
            predicted = method(frame["Content"])
            seconds = time.perf_counter() - start
            entry["results"][name] = score(frame["EventTemplate"], predicted, seconds)
            figures = entry["results"][name]
            print(
                f"  {system:<10} {name:<9} GA {figures['ga']:.3f}  ARI {figures['ari']:.3f}  "
                f"{seconds:6.1f} s",
                file=sys.stderr,
                flush=True,
            )
        results.append(entry)
    return results


def averages(results: list[dict[str, object]], systems: list[str], methods: list[str]) -> dict[str, object]:
    """Unweighted mean over the systems (each counts once, as in the loghub benchmark)."""
    chosen = [entry for entry in results if entry["system"] in systems]
    summary: dict[str, object] = {}
    for method in methods:
        figures = [entry["results"][method] for entry in chosen]
        summary[method] = {
            "ga": float(np.mean([f["ga"] for f in figures])),
            "ari": float(np.mean([f["ari"] for f in figures])),
            "top10_recovered": int(sum(f["top10_recovered"] for f in figures)),
            "top10_of": int(sum(f["top10_of"] for f in figures)),
            "seconds_total": float(sum(f["seconds"] for f in figures)),
        }
    return {"systems": [entry["system"] for entry in chosen], "methods": summary}


def table(results: list[dict[str, object]], summaries: dict[str, dict], methods: list[str]) -> str:
    header = f"{'dataset':<18} {'method':<17} {'GA':>6} {'ARI':>6} {'top-10':>7} {'seconds':>8}"
    lines = [header, "-" * len(header)]
    for entry in results:
        for method in methods:
            f = entry["results"][method]
            recovered = f"{f['top10_recovered']}/{f['top10_of']}"
            lines.append(
                f"{entry['system']:<18} {method:<17} {f['ga']:6.3f} {f['ari']:6.3f} {recovered:>7} "
                f"{f['seconds']:8.1f}"
            )
        lines.append("")
    for label, summary in summaries.items():
        name = f"mean {label} ({len(summary['systems'])})"
        for method in methods:
            f = summary["methods"][method]
            recovered = f"{f['top10_recovered']}/{f['top10_of']}"
            # Times are summed, and put against faultline's because this shared machine is noisy.
            ratio = ""
            if "faultline" in summary["methods"] and method != "faultline":
                faultline_seconds = summary["methods"]["faultline"]["seconds_total"]
                ratio = f"  ({f['seconds_total'] / faultline_seconds:.3g}x faultline's time)"
            lines.append(
                f"{name:<18} {method:<17} {f['ga']:6.3f} {f['ari']:6.3f} {recovered:>7} "
                f"{f['seconds_total']:8.1f}{ratio}"
            )
        lines.append("")
    lines.append("mean rows: GA and ARI averaged over the systems; top-10 and seconds summed")
    return "\n".join(lines) + "\n"


def ga_side_by_side(results: list[dict[str, object]], summaries: dict[str, dict], methods: list[str]) -> str:
    """GA of each method, one column each, one row per system: the shapes and profiles compared."""
    lines = [f"{'GA':<18}" + "".join(f" {method:>17}" for method in methods)]
    for entry in results:
        lines.append(
            f"{entry['system']:<18}" + "".join(f" {entry['results'][m]['ga']:17.3f}" for m in methods)
        )
    for label, summary in summaries.items():
        name = f"mean {label} ({len(summary['systems'])})"
        lines.append(f"{name:<18}" + "".join(f" {summary['methods'][m]['ga']:17.3f}" for m in methods))
    return "\n".join(lines) + "\n"


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _product_state() -> dict[str, object]:
    """Which product code was measured: where it was imported from, a hash of it, the repo's commit.

    Others edit the product while benchmarks run, so the commit alone does not say what ran.
    """

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(
                ["git", *args], cwd=REPO, capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    package = Path(faultline.__file__).resolve().parent
    sources = [*sorted(package.glob("*.py")), Path(inspect.getfile(Doc2VecConfig)).resolve()]
    changed = git("status", "--porcelain", "--", "faultline", "assets")
    return {
        "imported_from": str(package.parent),
        "sources_sha256": hashlib.sha256(b"".join(path.read_bytes() for path in sources)).hexdigest(),
        "repo_git_commit": git("rev-parse", "HEAD"),
        "repo_uncommitted_product_changes": changed.splitlines() if changed else [],
    }


def environment() -> dict[str, object]:
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpu": _cpu_model(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "versions": {
            package: _version(package)
            for package in ("faultline", "gensim", "scikit-learn", "numpy", "pandas", "drain3", "dagster")
        },
        "product": _product_state(),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of loghub-2k dataset folders")
    parser.add_argument(
        "--dev-systems",
        default=",".join(DEFAULT_DEV_SYSTEMS),
        help="comma list of the systems used while developing; the rest are reported as held out",
    )
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma list out of {', '.join(METHODS)} (leave out the slow seed while iterating)",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where to write the JSON")
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override faultline's Config (sections: flatten, cleaning, doc2vec, dbscan), for sensitivity "
        "runs only",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    methods = [name.strip() for name in args.methods.split(",") if name.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise SystemExit(f"--methods: unknown {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    if "drain3" in methods:
        require_drain3()
    datasets = find_datasets(args.data)
    dev = [name.strip() for name in args.dev_systems.split(",") if name.strip()]
    absent = sorted(set(dev) - set(datasets))
    if absent:
        raise SystemExit(
            f"--dev-systems: {', '.join(absent)} not in {args.data}; it holds {', '.join(datasets)}"
        )
    held_out = [name for name in datasets if name not in dev]
    # Taken before the run: the date it started and the product code it imported.
    context = environment()

    configs = faultline_configs(args.set)
    event_configs = faultline_configs([*args.set, *ONE_EVENT_PER_ROW])
    generic_configs = faultline_configs([*args.set, *GENERIC_PROFILE])
    available: dict[str, Callable[[pd.Series], np.ndarray]] = {
        "faultline": lambda messages: faultline_groups(messages, configs),
        "faultline_event": lambda messages: faultline_groups(messages, event_configs),
        "faultline_generic": lambda messages: faultline_groups(messages, generic_configs),
        "drain3": drain3_groups,
        "seed": seed_groups,
    }
    results = run(datasets, {name: available[name] for name in methods})

    summaries = {"all": averages(results, list(datasets), methods)}
    if dev:
        summaries["dev"] = averages(results, dev, methods)
    if held_out:
        summaries["held-out"] = averages(results, held_out, methods)
    print(table(results, summaries, methods))
    print(ga_side_by_side(results, summaries, methods))

    report = {
        "command": " ".join(["python", "bench/accuracy.py", *(argv if argv is not None else sys.argv[1:])]),
        **context,
        "configuration": {
            "faultline": {section: config.model_dump() for section, config in configs.items()},
            "faultline_overrides": args.set,
            "faultline_event_overrides": ONE_EVENT_PER_ROW,
            "faultline_generic_overrides": GENERIC_PROFILE,
            "seed": {"doc2vec": SEED_DOC2VEC, "dbscan": SEED_DBSCAN},
        },
        "methods": {name: METHOD_DESCRIPTIONS[name] for name in methods},
        "metrics": {
            "ga": "grouping accuracy (Zhu et al. 2019); noise and no-text messages are groups of one",
            "ari": "adjusted Rand index (scikit-learn), with the same groups of one",
            "top10_recovered": "of the ten largest true groups, how many are exactly one predicted group",
            "seconds": "wall seconds for the method on the dataset, cleaning included (summed in averages)",
        },
        "splits": {"dev": dev, "held_out": held_out},
        "datasets": results,
        "averages": summaries,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
