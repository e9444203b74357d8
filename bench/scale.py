"""How fast, and in how much memory, the error pipeline goes from the events store to the report files for
a day of N events, on SQLite and PostgreSQL, beside Drain3 and the seed.

    python bench/scale.py --events 10000 100000 1000000 [--stores sqlite postgresql]
                          [--url postgresql+psycopg2://postgres@127.0.0.1:5432/postgres]
                          [--workers W] [--single-worker-events 10000 100000 1000000]
                          [--postgresql-max-events N] [--drain3-max-events M] [--seed-events 20000]

For each N, a child process generates one day of N error events with the demo generator and writes it
to each events store with `DeploymentEventStore.write_batches`: a SQLite file, and a PostgreSQL
database the benchmark creates and drops (not timed). Then, per store, a child process materializes
the error-cluster assets for that day with `dagster.materialize` on a fresh instance, with the
project's resources (the store, `PartStore`, `ReportStore` and the atomic pickle IO manager), so the
whole path is timed: the store read, every step, the pickling of each value between steps and the
report files. Each step's time comes from the run's events; the memory is that of the child's process
tree. A further run on SQLite with one worker process gives the single-core figure. Drain3 then mines
the same day's flattened messages in a child of its own (its mining only is timed, on one thread).
Last, once, the seed's pipeline on the flattened messages of a --seed-events day, beside faultline's
steps after flatten on the same day. Results are printed and written to bench/results/scale.json.

    python bench/scale.py --dump-sources --events 1000000 [--stores sqlite postgresql]

measures the dump step alone from each kind of source of the same day (issue 17): the events tables,
and the same rows as files, one line per store row (JSON lines, plain and gzip, a date in the path; and
each batch wrapped with its time, `{"created_at": ..., "events": [...]}`, picked by time_field) and
Parquet (a `payload` column, row groups of 5,000 rows; by the path's date and by its `created_at`
column as the time field). Written to bench/results/scale_dump_sources.json.
"""

import argparse
import importlib.util
import json
import os
import pickle
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "scale.json"
DUMP_SOURCES_RESULTS = RESULTS.with_name("scale_dump_sources.json")
PARQUET_ROW_GROUP_ROWS = 5_000
BAR_SECONDS, BAR_MEMORY_MB, BAR_EVENTS = 60, 2048, 1_000_000
# The issue measures the seed on 20,000 events; Drain3 runs on every N up to the bar's.
SEED_EVENTS, DRAIN3_MAX_EVENTS = 20_000, BAR_EVENTS
DEFAULT_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
DEMO_END = datetime(2026, 11, 22, tzinfo=UTC)
DAY = "2026-11-21"  # the one day the generator writes, before DEMO_END
STEPS = (
    "deployment_events_dump",
    "flatten_events",
    "cleaned_corpus",
    "error_vectors",
    "error_clusters",
    "error_cluster_report",
)
# faultline's steps after flatten: what it does with the flattened messages, as the seed's pipeline does.
AFTER_FLATTEN = ("cleaned_corpus", "error_vectors", "error_clusters", "error_cluster_report")
SEED_ROWS_PER_WRITE = 5_000  # store rows per write_batches call while seeding: bounded memory
DRAIN3_THREADS = 1  # TemplateMiner.add_log_message runs on the caller's thread

# Written into the JSON, so that a reader of scale.json knows what each figure measures.
MEASURES = {
    "results[].runs[]": "one materialization of the six error-cluster steps (deployment_events_dump to "
    "error_cluster_report) with dagster.materialize, in-process, on a fresh temporary instance, in a "
    "child process of its own; `store` says which events store the dump read, `workers` how many "
    "processes flatten_events and cleaned_corpus ran on (their Config's `workers`).",
    "results[].runs[].total_s": "wall seconds of the dagster.materialize call: the dump read from the "
    "store (DeploymentEventStore.iter_batches into PartStore parts), every step, the IO manager's pickling "
    "of each value between steps (resources/io_manager.py AtomicFilesystemIOManager), the report files "
    "(resources/report_store.py) and Dagster's own work (run and event records on the temporary "
    "instance's SQLite storage).",
    "results[].runs[].steps[step].step_s": "from the step's STEP_START to its STEP_SUCCESS event; "
    "steps_total_s is their sum, and total_s less it is Dagster's work around the steps.",
    "results[].runs[].steps[step].load_inputs_s": "from STEP_START to the step's last LOADED_INPUT event: "
    "reading its inputs' pickles (for the parted tables, a small FrameParts).",
    "results[].runs[].steps[step].handle_outputs_s": "sum over the step's outputs of STEP_OUTPUT to "
    "HANDLED_OUTPUT: pickling the value to the IO manager's folder (and the materialization's record).",
    "results[].runs[].value_bytes": "size of each value's pickle as the IO manager wrote it; the dump and "
    "the flattened events are FrameParts pointing at parts on disk, whose total is parts_bytes.",
    "results[].runs[].events_per_s": "events / total_s.",
    "results[].runs[].load_average_1m": "the machine's 1-minute load average as the run started and "
    "ended (2 cores, shared with other work).",
    "results[].runs[].peak_tree_pss_mb": "highest sum of PSS (proportional set size: a page shared by k "
    "processes counts 1/k in each) over the run's process and all its descendants (the worker "
    "processes and their fork server), sampled every 0.5 s from /proc/<pid>/smaps_rollup (more often "
    "would cost the run a large share of a core): the memory the run held at once.",
    "results[].runs[].peak_tree_rss_mb": "highest sum of RSS over the same processes, sampled every 20 ms "
    "from /proc/<pid>/status; pages shared by the workers count once per process, so this over-counts.",
    "results[].runs[].sum_of_process_peaks_mb": "the sum, over every process of the tree, of its own VmHWM "
    "(peak RSS) as last read: a bound no simultaneous total can exceed.",
    "results[].runs[].per_drain3": "this run's events_per_s / Drain3's events_per_s, with both sides' "
    "parallelism beside it: faultline_workers (processes for flatten and clean; the other steps run in "
    "one process) and drain3_threads (1).",
    "results[].seeding_s": "seconds to write the generated rows to each store (write_batches, "
    f"{SEED_ROWS_PER_WRITE:,} rows a call); not part of any run.",
    "results[].drain3.events_per_s": "Drain3 mining only, on one thread: events_mined / mining_s, where "
    "mining_s is the wall time of TemplateMiner.add_log_message over each message (bench/baselines.py "
    "drain3_miner: default TemplateMinerConfig plus the masking of Drain3's examples/drain3.ini). The "
    "messages are the `message` column of the flattened_events parts of the SQLite run (redacted, as "
    "faultline clusters them), each part read before the clock runs: Drain3 is not charged for reading "
    "the store, decoding JSON or redacting, which faultline's events_per_s includes.",
    "results[].drain3.events_mined": "how many messages Drain3 mined: all of them, or the first "
    "--drain3-max-events when N is larger (capped: true).",
    "results[].drain3.peak_rss_mb": "Drain3's child process: its VmHWM (peak RSS), imports included "
    "(bench/baselines.py also imports gensim and scikit-learn).",
    "seed_comparison": "on one --seed-events day, both timed from the flattened messages: seed_s is "
    "bench/baselines.py seed_groups (the seed's pipeline as written: its cleaning, Doc2Vec on every "
    "message, DBSCAN) over the flattened_events parts' messages; faultline_s is the step_s of "
    "cleaned_corpus, error_vectors, error_clusters and error_cluster_report in a run on SQLite (the "
    "report, its files and the pickling between steps are work the seed does not do); "
    "seed_per_faultline_seconds = seed_s / faultline_s.",
}


def product_state() -> dict[str, object]:
    """Which product code was measured: where it was imported from, the commit, uncommitted changes.

    Others edit the product while benchmarks run, so the commit alone does not say what ran.
    """
    import faultline

    root = Path(faultline.__file__).resolve().parents[1]

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True).stdout.strip()

    changed = git("status", "--porcelain", "--", "faultline", "assets", "resources")
    return {
        "imported_from": str(root),
        "git_commit": git("rev-parse", "HEAD"),
        "uncommitted_product_changes": changed.splitlines(),
    }


def _store_url(store: str, folder: Path, postgresql_url: str | None) -> str:
    return f"sqlite:///{folder / 'events.db'}" if store == "sqlite" else postgresql_url


def _seeded_rows(n_events: int, urls: list[str]) -> tuple[list[dict], dict[str, object]]:
    """One day of `n_events` demo error events (and the progress events around them), written to each
    store: the rows, and the seconds it took to make them and to write each store."""
    from faultline.demo_data.deployment_events import generate_deployment_batches
    from resources.event_store import DeploymentEventStore

    began = time.perf_counter()
    rows = generate_deployment_batches(end=DEMO_END, days=1, n_error_events=n_events)
    figures: dict[str, object] = {"generate_s": time.perf_counter() - began, "store_rows": len(rows)}
    for url in urls:
        store = DeploymentEventStore(url=url)
        began = time.perf_counter()
        store.create_table(replace=True)
        for start in range(0, len(rows), SEED_ROWS_PER_WRITE):
            store.write_batches(rows[start : start + SEED_ROWS_PER_WRITE])
        figures[url.split(":", 1)[0].split("+", 1)[0]] = time.perf_counter() - began
    return rows, figures


def seed_stores(n_events: int, urls: list[str]) -> dict[str, object]:
    """One day of `n_events` demo error events (and the progress events around them), in each store."""
    return _seeded_rows(n_events, urls)[1]


def seed_sources(n_events: int, folder: Path, urls: list[str]) -> dict[str, object]:
    """One day of `n_events` demo error events in each events store and as files: JSON lines (plain and
    gzip; one line per store row, its payload) and Parquet (the rows' columns)."""
    import gzip

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows, figures = _seeded_rows(n_events, urls)
    began = time.perf_counter()
    kinds = ("jsonl", "jsonl_gz", "jsonl_time_field", "parquet")
    for kind in kinds:
        (folder / kind).mkdir()
    with (
        open(folder / "jsonl" / f"{DAY}.jsonl", "w", encoding="utf-8") as plain,
        gzip.open(folder / "jsonl_gz" / f"{DAY}.jsonl.gz", "wt", encoding="utf-8", compresslevel=6) as packed,
        open(folder / "jsonl_time_field" / "events.jsonl", "w", encoding="utf-8") as timed,
    ):
        for row in rows:
            plain.write(row["payload"] + "\n")
            packed.write(row["payload"] + "\n")
            # The same batch in an object with its time, as a file without dates in its name would be.
            timed.write(f'{{"created_at": "{row["created_at"].isoformat()}", "events": {row["payload"]}}}\n')
    schema = pa.schema(
        [("id", pa.int64()), ("created_at", pa.timestamp("us", tz="UTC")), ("payload", pa.string())]
    )
    with pq.ParquetWriter(folder / "parquet" / f"{DAY}.parquet", schema) as writer:
        for start in range(0, len(rows), PARQUET_ROW_GROUP_ROWS):
            chunk = rows[start : start + PARQUET_ROW_GROUP_ROWS]
            writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
    figures["files_s"] = time.perf_counter() - began
    figures["payload_bytes"] = sum(len(row["payload"].encode()) for row in rows)
    figures["file_bytes"] = {kind: _bytes(folder / kind) for kind in kinds}
    return figures


def dump_sources(folder: Path, urls: dict[str, str]) -> dict[str, dict]:
    """The sources the dump step is measured from, as the resource each is (class and fields)."""
    sources = {store: {"kind": "DeploymentEventStore", "url": url} for store, url in urls.items()}
    sources["jsonl"] = {"kind": "EventFiles", "path": str(folder / "jsonl" / "%Y-%m-%d.jsonl")}
    sources["jsonl_gz"] = {"kind": "EventFiles", "path": str(folder / "jsonl_gz" / "%Y-%m-%d.jsonl.gz")}
    sources["jsonl_time_field"] = {
        "kind": "EventFiles",
        "path": str(folder / "jsonl_time_field"),
        "time_field": "created_at",
    }
    sources["parquet"] = {
        "kind": "EventFiles",
        "path": str(folder / "parquet" / "%Y-%m-%d.parquet"),
        "payload_column": "payload",
    }
    sources["parquet_time_field"] = {
        "kind": "EventFiles",
        "path": str(folder / "parquet"),
        "payload_column": "payload",
        "time_field": "created_at",
    }
    return sources


def run_dump(source: dict, folder: Path) -> dict[str, object]:
    """The dump step as the deployment_events_dump asset runs it: the source's day into PartStore parts."""
    from faultline.pipeline import DEFAULT_ROWS_PER_PART
    from resources.error_source import DUMP_COLUMNS
    from resources.event_files import EventFiles
    from resources.event_store import DeploymentEventStore
    from resources.part_store import PartStore

    kind = {"DeploymentEventStore": DeploymentEventStore, "EventFiles": EventFiles}[source["kind"]]
    resource = kind(**{key: value for key, value in source.items() if key != "kind"})
    parts = PartStore(directory=str(folder))
    start = datetime.fromisoformat(DAY).replace(tzinfo=UTC)
    end = DEMO_END
    rss_before = _status_mb("VmRSS")
    load_before = os.getloadavg()[0]
    with TreeMemory() as memory:
        began = time.perf_counter()
        dump = parts.write(
            "deployment_events_dump",
            DAY,
            resource.iter_batches(start, end, DEFAULT_ROWS_PER_PART),
            DUMP_COLUMNS,
        )
        dump_s = time.perf_counter() - began
    payload_bytes = 0
    for frame in dump.frames():  # after the clock: that the same rows were dumped from every source
        payload_bytes += sum(len(p if isinstance(p, bytes) else p.encode()) for p in frame["payload"])
    return {
        "dump_s": dump_s,
        "rows": dump.n_rows,
        "parts": dump.n_parts,
        "payload_bytes": payload_bytes,
        "rows_per_s": dump.n_rows / dump_s,
        "rss_before_mb": rss_before,
        "load_average_1m": [load_before, os.getloadavg()[0]],
        "left_out": resource.last_read_counts(),
        **memory.figures(),
    }


def measure_dump_sources(args: argparse.Namespace, postgresql_url: str | None, folder: Path) -> list:
    results = []
    for n in args.events:
        here = folder / f"events_{n}"
        here.mkdir()
        urls = {store: _store_url(store, here, postgresql_url) for store in args.stores}
        seeding = child(["--_seed-sources", str(n), str(here), *urls.values()])
        print(
            f"N={n:,}: {seeding['store_rows']:,} store rows ({seeding['payload_bytes'] / 1e6:,.0f} MB of "
            "payloads); files "
            + ", ".join(f"{kind} {size / 1e6:,.0f} MB" for kind, size in seeding["file_bytes"].items()),
            flush=True,
        )
        runs = {}
        for name, source in dump_sources(here, urls).items():
            (here / f"parts_{name}").mkdir()
            run = child(["--_dump", json.dumps(source), str(here / f"parts_{name}")])
            runs[name] = {"source": {k: v for k, v in source.items() if k != "url"}, **run}
            print(
                f"  {name:<20} dump {run['dump_s']:6.1f}s  {run['rows']:,} rows in {run['parts']} parts  "
                f"peak RSS {run['peak_tree_rss_mb']:5.0f} MB (before the read "
                f"{run['rss_before_mb']:4.0f} MB)",
                flush=True,
            )
        for reference in args.stores:
            for run in runs.values():
                run[f"per_{reference}"] = {
                    "dump_s": run["dump_s"] / runs[reference]["dump_s"],
                    "peak_tree_rss_mb": run["peak_tree_rss_mb"] / runs[reference]["peak_tree_rss_mb"],
                }
        results.append({"n": n, "seeding": seeding, "runs": runs})
    return results


def _tree(root: int) -> list[int]:
    """`root` and every process descended from it, from /proc."""
    pids, found = [root], []
    while pids:
        pid = pids.pop()
        found.append(pid)
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as children:
                    pids.extend(int(child) for child in children.read().split())
        except OSError:
            continue
    return found


def _kib(path: str, field: str) -> int:
    with open(path) as status:
        return next((int(line.split()[1]) for line in status if line.startswith(field)), 0)


class TreeMemory:
    """Samples the memory of this process and its descendants, in a thread.

    RSS every `interval_s` (reading /proc/<pid>/status costs microseconds); PSS every
    `pss_interval_s` only, as /proc/<pid>/smaps_rollup walks the process's page tables (about 5 ms
    for 500 MB), which, read every 20 ms for four processes, took half a core from the run measured.
    """

    def __init__(self, interval_s: float = 0.02, pss_interval_s: float = 0.5) -> None:
        self.interval_s, self.pss_every = interval_s, max(1, round(pss_interval_s / interval_s))
        self.peak_pss_kib = self.peak_rss_kib = 0
        self.process_peaks_kib: dict[int, int] = {}
        self._samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self, with_pss: bool) -> None:
        pss = rss = 0
        for pid in _tree(os.getpid()):
            try:
                with open(f"/proc/{pid}/status") as status:
                    fields = dict(
                        line.split(":", 1) for line in status if line.startswith(("VmRSS", "VmHWM"))
                    )
                rss += int(fields["VmRSS"].split()[0])
                self.process_peaks_kib[pid] = int(fields["VmHWM"].split()[0])
                if with_pss:
                    pss += _kib(f"/proc/{pid}/smaps_rollup", "Pss:")
            except (OSError, KeyError):
                continue  # exited between the listing and the reading
        self.peak_rss_kib = max(self.peak_rss_kib, rss)
        if with_pss:
            self.peak_pss_kib = max(self.peak_pss_kib, pss)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._samples += 1
            self._sample(with_pss=self._samples % self.pss_every == 0)

    def __enter__(self) -> "TreeMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample(with_pss=True)

    def figures(self) -> dict[str, float]:
        return {
            "peak_tree_pss_mb": self.peak_pss_kib / 1024,
            "peak_tree_rss_mb": self.peak_rss_kib / 1024,
            "sum_of_process_peaks_mb": sum(self.process_peaks_kib.values()) / 1024,
            "processes_seen": len(self.process_peaks_kib),
        }


def step_times(records: list) -> dict[str, dict[str, float]]:
    """Per step, from the run's event records: its whole time, reading its inputs, storing its outputs."""
    steps: dict[str, dict[str, float]] = {}
    started: dict[str, float] = {}
    output_at: dict[str, float] = {}
    for record in records:
        event, step = record.dagster_event, record.step_key
        if event is None or step is None:
            continue
        kind = event.event_type_value
        figures = steps.setdefault(step, {"step_s": 0.0, "load_inputs_s": 0.0, "handle_outputs_s": 0.0})
        if kind == "STEP_START":
            started[step] = record.timestamp
        elif kind == "LOADED_INPUT":
            figures["load_inputs_s"] = record.timestamp - started[step]
        elif kind == "STEP_OUTPUT":
            output_at[step] = record.timestamp
        elif kind == "HANDLED_OUTPUT":
            figures["handle_outputs_s"] += record.timestamp - output_at[step]
        elif kind == "STEP_SUCCESS":
            figures["step_s"] = record.timestamp - started[step]
    return steps


def _bytes(path: Path) -> int:
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())


def run_assets(url: str, workers: int, folder: Path) -> dict[str, object]:
    """The error-cluster assets materialized for the day, from the store at `url` to the report files."""
    import dagster as dg

    from assets import error_clusters
    from resources.error_sources import ErrorEventFormat
    from resources.event_store import DeploymentEventStore
    from resources.io_manager import AtomicFilesystemIOManager
    from resources.part_store import PartStore
    from resources.report_store import ReportStore

    assets = dg.load_assets_from_modules([error_clusters])
    resources = {
        "event_store": DeploymentEventStore(url=url),
        # The deployment's default format: Qovery's batched events.
        "error_format": ErrorEventFormat(),
        "part_store": PartStore(directory=str(folder / "parts")),
        "report_store": ReportStore(directory=str(folder / "reports")),
        "io_manager": AtomicFilesystemIOManager(base_dir=str(folder / "values")),
    }
    in_workers = {"config": {"workers": workers}}
    run_config = {"ops": {"flatten_events": in_workers, "cleaned_corpus": in_workers}}
    (folder / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(folder / "home")) as instance:
        load_before = os.getloadavg()[0]
        with TreeMemory() as memory:
            began = time.perf_counter()
            result = dg.materialize(
                assets, instance=instance, partition_key=DAY, resources=resources, run_config=run_config
            )
            total_s = time.perf_counter() - began
        load_after = os.getloadavg()[0]
        steps = step_times(list(instance.all_logs(result.run_id)))
        report = result.asset_value("error_cluster_report")
        corpus = result.asset_value("cleaned_corpus")
        events = result.asset_value("flattened_events")
    (folder / "flattened_events.pkl").write_bytes(pickle.dumps(events))
    values = folder / "values"
    return {
        "workers": workers,
        "events": report.n_events,
        "clusters": report.n_clusters,
        "variants": len(corpus.variants),
        "dump_parts": result.asset_value("deployment_events_dump").n_parts,
        "total_s": total_s,
        "steps_total_s": sum(steps[step]["step_s"] for step in STEPS),
        "events_per_s": report.n_events / total_s,
        "load_average_1m": [load_before, load_after],
        "steps": {step: steps[step] for step in STEPS},
        "value_bytes": {path.name: _bytes(path) for path in sorted(values.iterdir())},
        "parts_bytes": _bytes(folder / "parts"),
        "report_bytes": _bytes(folder / "reports"),
        **memory.figures(),
    }


def flattened_parts(folder: Path) -> Iterator[list[str]]:
    """The messages of a run's flattened events, part by part."""
    events = pickle.loads((folder / "flattened_events.pkl").read_bytes())
    for frame in events.frames():
        yield frame["message"].astype(str).tolist()


def _status_mb(field: str) -> float:
    return _kib("/proc/self/status", f"{field}:") / 1024


def run_drain3(folder: Path, max_events: int) -> dict[str, object]:
    """Drain3's mining, and only that, over the first `max_events` flattened messages of a run."""
    import importlib.metadata

    from baselines import drain3_miner

    miner = drain3_miner()
    mining_s, events, mined = 0.0, 0, 0
    for messages in flattened_parts(folder):
        events += len(messages)
        batch = messages[: max(0, max_events - mined)]
        started = time.perf_counter()
        for message in batch:
            miner.add_log_message(message)
        mining_s += time.perf_counter() - started
        mined += len(batch)
    return {
        "drain3_version": importlib.metadata.version("drain3"),
        "threads": DRAIN3_THREADS,
        "events": events,
        "events_mined": mined,
        "capped": mined < events,
        "templates": len(miner.drain.clusters),
        "mining_s": mining_s,
        "events_per_s": mined / mining_s,
        "peak_rss_mb": _status_mb("VmHWM"),
    }


def run_seed(folder: Path) -> dict[str, object]:
    """The seed's pipeline as written (bench/baselines.py), timed from a run's flattened messages."""
    import pandas as pd
    from baselines import seed_groups

    messages = pd.Series([message for part in flattened_parts(folder) for message in part], dtype=object)
    started = time.perf_counter()
    labels = seed_groups(messages)
    seed_s = time.perf_counter() - started
    return {
        "events": len(messages),
        "seed_s": seed_s,
        "groups": len({label for label in labels.tolist() if label >= 0}),
        "noise_or_no_text": int((labels < 0).sum()),
        "peak_rss_mb": _status_mb("VmHWM"),
    }


def child(args: list[str]) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench/scale.py {' '.join(args[:2])} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def faultline_run(store: str, url: str, workers: int, folder: Path) -> dict[str, object]:
    folder.mkdir()
    run = child(["--_run", url, str(workers), str(folder)])
    steps = "  ".join(f"{step.split('_')[-1]} {run['steps'][step]['step_s']:5.1f}s" for step in STEPS)
    print(
        f"  faultline {store:<10} {workers} worker{'s' if workers > 1 else ' '}  "
        f"total {run['total_s']:6.1f}s  {run['events_per_s']:8,.0f} ev/s  "
        f"PSS {run['peak_tree_pss_mb']:5.0f} MB (sum of peaks {run['sum_of_process_peaks_mb']:5.0f} MB)  "
        f"|  {steps}",
        flush=True,
    )
    return {"store": store, **run}


def _interrupt(signum: int, frame: object) -> None:
    # A terminated run unwinds like Ctrl-C, so the benchmark's database is always dropped.
    raise KeyboardInterrupt(f"signal {signum}")


def measure(args: argparse.Namespace, postgresql_url: str | None, folder: Path) -> tuple[list, dict]:
    from resources.frame_parts import available_cores

    workers = args.workers or available_cores()
    results = []
    for n in args.events:
        here = folder / f"events_{n}"
        here.mkdir()
        stores = [
            store
            for store in args.stores
            if store != "postgresql" or args.postgresql_max_events <= 0 or n <= args.postgresql_max_events
        ]
        urls = {store: _store_url(store, here, postgresql_url) for store in stores}
        seeding = child(["--_seed", str(n), *urls.values()])
        print(
            f"N={n:,}: {seeding['store_rows']:,} store rows generated in {seeding['generate_s']:.1f}s, "
            + ", ".join(f"written to {store} in {seeding[store]:.1f}s" for store in stores),
            flush=True,
        )
        runs = [
            faultline_run(store, url, workers, here / f"{store}_{workers}") for store, url in urls.items()
        ]
        first = stores[0]
        if n in args.single_worker_events and workers != 1:
            runs.append(faultline_run(first, urls[first], 1, here / f"{first}_1"))
        result: dict[str, object] = {
            "n": n,
            "store_rows": seeding["store_rows"],
            "generate_s": seeding["generate_s"],
            "seeding_s": {store: seeding[store] for store in stores},
            "stores_not_run": sorted(set(args.stores) - set(stores)),
            "runs": runs,
        }
        if args.drain3_max_events > 0:
            drain3 = child(["--_drain3", str(here / f"{first}_{workers}"), str(args.drain3_max_events)])
            for run in runs:
                run["per_drain3"] = {
                    "ratio": run["events_per_s"] / drain3["events_per_s"],
                    "faultline_workers": run["workers"],
                    "drain3_threads": drain3["threads"],
                }
            mined = (
                f"first {drain3['events_mined']:,} of {drain3['events']:,}"
                if drain3["capped"]
                else f"all {drain3['events_mined']:,}"
            )
            ratios = ", ".join(
                f"{run['store']} {run['workers']}w/1t {run['per_drain3']['ratio']:.2f}x" for run in runs
            )
            print(
                f"  Drain3 (1 thread) mining {drain3['mining_s']:6.1f}s  "
                f"{drain3['events_per_s']:8,.0f} ev/s  "
                f"peak {drain3['peak_rss_mb']:5.0f} MB  {drain3['templates']} templates, {mined} messages  "
                f"|  faultline/Drain3: {ratios}",
                flush=True,
            )
        else:
            drain3 = {"not_run": "--drain3-max-events 0"}
        result["drain3"] = drain3
        results.append(result)

    seed_comparison: dict[str, object] = {"not_run": "--seed-events 0"}
    if args.seed_events > 0:
        n = args.seed_events
        here = folder / f"seed_{n}"
        here.mkdir()
        url = _store_url(args.stores[0], here, postgresql_url)
        child(["--_seed", str(n), url])
        faultline = faultline_run(args.stores[0], url, workers, here / "faultline")
        seed = child(["--_seed-pipeline", str(here / "faultline")])
        faultline_s = sum(faultline["steps"][step]["step_s"] for step in AFTER_FLATTEN)
        seed_comparison = {
            "n": n,
            "timed_from": "the flattened messages (the dump and flatten untimed for both)",
            "faultline_steps": list(AFTER_FLATTEN),
            "faultline_s": faultline_s,
            "faultline_run": faultline,
            "seed_s": seed["seed_s"],
            "seed_run": seed,
            "seed_per_faultline_seconds": seed["seed_s"] / faultline_s,
        }
        print(
            f"Seed's pipeline vs faultline on N={n:,}, both from the flattened messages: "
            f"seed {seed['seed_s']:.1f}s, faultline {faultline_s:.1f}s ({' + '.join(AFTER_FLATTEN)}), "
            f"seed/faultline {seed_comparison['seed_per_faultline_seconds']:.1f}x",
            flush=True,
        )
    return results, seed_comparison


def _with_database(args: argparse.Namespace, measure_in: Callable[[str | None], object]) -> object:
    """`measure_in(url)` with a PostgreSQL database of its own (None when PostgreSQL is not measured),
    dropped after."""
    import sqlalchemy as sa

    if "postgresql" not in args.stores:
        return measure_in(None)
    name = f"faultline_scale_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(args.url, isolation_level="AUTOCOMMIT")
    url = sa.engine.make_url(args.url).set(database=name).render_as_string(hide_password=False)
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            return measure_in(url)
        finally:
            with admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


DUMP_SOURCES_MEASURES = {
    "results[].runs[source].dump_s": "wall seconds of PartStore.write('deployment_events_dump', day, "
    "source.iter_batches(day, next day, rows_per_part=5,000), DUMP_COLUMNS), as the asset calls it, in a "
    "child process of its own (no Dagster run around it): reading the day from the source and pickling "
    "its parts.",
    "results[].runs[source].source": "the resource read: DeploymentEventStore on SQLite or PostgreSQL, "
    "EventFiles on the same rows as files, one line (or Parquet row) per store row holding its payload.",
    "results[].runs[source].peak_tree_rss_mb": "highest RSS of the child process (sampled every 20 ms), "
    "imports included; rss_before_mb is its RSS after the imports, before the read.",
    "results[].runs[source].per_<store>": "this source's dump_s and peak RSS divided by that store's.",
    "results[].runs[source].payload_bytes": "UTF-8 bytes of the dumped payloads, counted after the "
    "clock: equal across sources when each dumped the same rows (jsonl_time_field's lines wrap each "
    'batch as {"created_at": ..., "events": [...]}, so its payloads are longer by that).',
    "results[].seeding": "generating the day and writing it to each store and file (not timed in any run).",
}


def main_dump_sources(args: argparse.Namespace) -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    product = product_state()
    print("The dump step alone, from each source of the same day's rows.", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        results = _with_database(args, lambda url: measure_dump_sources(args, url, Path(folder)))
    record = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", "bench/scale.py", *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "product": product,
        "options": {"events": args.events, "stores": args.stores},
        "measures": DUMP_SOURCES_MEASURES,
        "results": results,
    }
    output = args.output or DUMP_SOURCES_RESULTS
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(record, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument(
        "--stores", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"]
    )
    parser.add_argument(
        "--url", default=DEFAULT_ADMIN_URL, help="a PostgreSQL URL allowed to create databases"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="processes for flatten and clean, as their Config (0: one per core)",
    )
    parser.add_argument(
        "--single-worker-events",
        type=int,
        nargs="*",
        default=[10_000, 100_000, 1_000_000],
        help="the N at which faultline also runs with one worker process, on SQLite",
    )
    parser.add_argument(
        "--postgresql-max-events",
        type=int,
        default=0,
        help="leave PostgreSQL out above this N (0: no limit), when seeding it would take too long",
    )
    parser.add_argument(
        "--drain3-max-events",
        type=int,
        default=DRAIN3_MAX_EVENTS,
        help="Drain3 mines at most this many of each day's messages, the first ones (recorded as "
        "capped); 0 leaves Drain3 out (default %(default)s)",
    )
    parser.add_argument(
        "--seed-events",
        type=int,
        default=SEED_EVENTS,
        help="events of the day the seed's pipeline and faultline are compared on; 0 leaves the "
        "seed out (default %(default)s; the seed takes about a minute per thousand events)",
    )
    parser.add_argument(
        "--dump-sources",
        action="store_true",
        help="measure the dump step alone, from the events stores and from the same rows as files "
        f"(written to {DUMP_SOURCES_RESULTS.name} unless --output says otherwise)",
    )
    parser.add_argument("--output", type=Path, default=None, help="where to write the JSON")
    parser.add_argument("--_seed", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--_run", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--_drain3", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--_seed-pipeline", help=argparse.SUPPRESS)
    parser.add_argument("--_seed-sources", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--_dump", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._seed_sources:
        n, folder, *urls = args._seed_sources
        print(json.dumps(seed_sources(int(n), Path(folder), urls)))
        return
    if args._dump:
        print(json.dumps(run_dump(json.loads(args._dump[0]), Path(args._dump[1]))))
        return
    if args.dump_sources:
        main_dump_sources(args)
        return
    args.output = args.output or RESULTS
    if args._seed:
        print(json.dumps(seed_stores(int(args._seed[0]), args._seed[1:])))
        return
    if args._run:
        print(json.dumps(run_assets(args._run[0], int(args._run[1]), Path(args._run[2]))))
        return
    if args._drain3:
        print(json.dumps(run_drain3(Path(args._drain3[0]), int(args._drain3[1]))))
        return
    if args._seed_pipeline:
        print(json.dumps(run_seed(Path(args._seed_pipeline))))
        return
    if args.drain3_max_events > 0 and importlib.util.find_spec("drain3") is None:
        raise SystemExit(
            "Drain3 is not installed, and the benchmark compares against it: run "
            "`.venv/bin/python -m pip install -e '.[dev,bench]'`, or leave it out with --drain3-max-events 0."
        )


    print(
        "faultline: the error-cluster assets materialized from the events store to the report files.\n"
        "Drain3: add_log_message only, on one thread, over the same day's flattened messages (read untimed).",
        flush=True,
    )
    signal.signal(signal.SIGTERM, _interrupt)
    product = product_state()  # before the run: the files may change while it runs
    with tempfile.TemporaryDirectory() as folder:
        results, seed_comparison = _with_database(args, lambda url: measure(args, url, Path(folder)))
    record = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", "bench/scale.py", *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "product": product,
        "bar": {"events": BAR_EVENTS, "seconds": BAR_SECONDS, "peak_memory_mb": BAR_MEMORY_MB},
        "options": {
            "events": args.events,
            "stores": args.stores,
            "workers": args.workers,
            "single_worker_events": args.single_worker_events,
            "postgresql_max_events": args.postgresql_max_events,
            "drain3_max_events": args.drain3_max_events,
            "seed_events": args.seed_events,
        },
        "measures": MEASURES,
        "results": results,
        "seed_comparison": seed_comparison,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
