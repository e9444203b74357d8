"""How fast, and in how much memory, the error pipeline handles a day of N error events.

    python bench/scale.py --events 10000 100000 1000000

For each N, a child process generates the input with the demo generator (not timed) and another
runs flatten, clean, vectorize, cluster and report with the product's functions and default
configuration, timing each stage and reading its own peak resident memory. Results are printed and
written to bench/results/scale.json.
"""

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "scale.json"
BAR_SECONDS, BAR_MEMORY_MB, BAR_EVENTS = 60, 2048, 1_000_000


def generate(n_events: int, path: Path) -> None:
    """The demo generator's batches for one day of `n_events` error events, pickled to `path`."""
    import pandas as pd

    from faultline.demo_data.deployment_events import generate_deployment_batches

    rows = generate_deployment_batches(
        end=datetime(2026, 11, 22, tzinfo=UTC), days=1, n_error_events=n_events
    )
    pd.DataFrame(rows).to_pickle(path)


def run_pipeline(path: Path) -> dict[str, object]:
    """The error_clusters chain of assets, stage by stage, on the pickled dump."""
    import pandas as pd

    from assets.error_clusters import DBSCANConfig, Doc2VecConfig, FlattenConfig
    from faultline.cleaning import build_corpus
    from faultline.clustering import cluster_vectors, label_events, vectorize_texts
    from faultline.flatten import flatten_batches
    from faultline.report import build_cluster_report

    started = time.perf_counter()
    dump = pd.read_pickle(path)
    load_s = time.perf_counter() - started
    flatten_config, doc2vec, dbscan = FlattenConfig(), Doc2VecConfig(), DBSCANConfig()
    stages: dict[str, float] = {}

    @contextmanager
    def stage(name: str) -> Iterator[None]:
        began = time.perf_counter()
        yield
        stages[name] = time.perf_counter() - began

    with stage("flatten"):
        events = flatten_batches(dump, flatten_config.error_states, flatten_config.max_message_chars).events
    del dump  # what a later stage does not need does not count toward its peak memory
    with stage("clean"):
        corpus = build_corpus(events)
    del events
    with stage("vectorize"):
        vectors = vectorize_texts(corpus["cleaned"], **doc2vec.model_dump())
    with stage("cluster"):
        labels = cluster_vectors(
            vectors, dbscan.eps, dbscan.min_samples, dbscan.metric, dbscan.center_vectors
        )
        clustered = label_events(corpus, vectors, labels, dbscan.merge_clusters_sharing_hint)
    with stage("report"):
        report = build_cluster_report(clustered)
    return {
        "events": report.n_events,
        "distinct_texts": len(vectors.texts),
        "clusters": report.n_clusters,
        "load_s": load_s,
        "stages_s": stages,
        "total_s": sum(stages.values()),
        # Linux reports ru_maxrss in KiB; it includes loading the input.
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def child(args: list[str]) -> dict:
    output = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--_generate", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--_run", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._generate:
        generate(int(args._generate[0]), Path(args._generate[1]))
        print(json.dumps({"ok": True}))
        return
    if args._run:
        print(json.dumps(run_pipeline(Path(args._run))))
        return

    results = []
    with tempfile.TemporaryDirectory() as folder:
        for n in args.events:
            path = Path(folder) / f"dump_{n}.pkl"
            began = time.perf_counter()
            child(["--_generate", str(n), str(path)])
            generate_s = time.perf_counter() - began
            result = child(["--_run", str(path)]) | {"n": n, "generate_s": generate_s}
            result["events_per_s"] = result["events"] / result["total_s"]
            results.append(result)
            stages = "  ".join(f"{k} {v:6.1f}s" for k, v in result["stages_s"].items())
            print(
                f"N={n:>9,}  total {result['total_s']:7.1f}s  {result['events_per_s']:9,.0f} ev/s  "
                f"peak {result['peak_rss_mb']:7.0f} MB  texts {result['distinct_texts']:>6}  |  {stages}",
                flush=True,
            )
    record = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "bar": {"events": BAR_EVENTS, "seconds": BAR_SECONDS, "peak_memory_mb": BAR_MEMORY_MB},
        "results": results,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
