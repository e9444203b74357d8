"""How the duration side scales: limits learned over 10 million task runs, and the sensor's check of
100,000 running tasks against them, on PostgreSQL.

    python bench/durations.py --task-types 10000 --runs 10000000 --running 100000
    python bench/durations.py --compare-with /tmp/before    # a checkout of an older commit, see below

Fresh databases are created on the server and dropped at the end (also on failure or Ctrl-C). One is
loaded with generated runs in the `task_runs` contract by COPY; then the project's own code is timed
three times, each time in a fresh process: the baselines as the `task_duration_baselines` asset
computes and saves them, then whole evaluations of the `long_running_tasks` sensor with its real
resources: a first tick that raises the planted alerts with no sink, one that raises them and
delivers them to a JSON webhook on loopback, and a second tick that finds nothing new. Results are
printed and written to bench/results/durations.json (`--output`).

`--estimators mean_std,alert_budget` (the default) also times the limits of each estimator named, each
in a fresh process with its peak memory: the seed's mean_std from moments summed in SQL, the others as
the tree's asset reads them (a histogram summed in SQL, or every run of the window at older commits).

`--compare-with TREE` times the same script in TREE (a `git worktree` of an older commit, with this
file copied into its bench/) in turn with this one, on the same data, each with an alert store of its
own: on a shared, noisy machine only figures taken side by side compare.
"""

import argparse
import contextlib
import functools
import gc
import http.server
import io
import json
import os
import platform
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import chain
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dagster as dg  # noqa: E402

import dagster_project.sensors as sensors  # noqa: E402
import faultline.durations as durations  # noqa: E402
from faultline.durations import DEFAULT_K, WINDOW_DAYS, K, baselines_from_moments  # noqa: E402
from resources.alert_sinks import AlertSinks  # noqa: E402
from resources.alert_store import AlertStore  # noqa: E402
from resources.workflow import SqlWorkflowService  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "durations.json"
DEFAULT_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
BAR_BASELINES_S = 30.0  # issue 5
BAR_TICK_S = 1.0  # issue 5
BAR_DELIVERY_TICK_S = 5.0  # issue 19: a tick that raises and delivers 1,000 new alerts to a webhook
REPEATS = 3  # a shared, noisy machine: each figure is the median and the min of three

# One day more history than the 14-day window, so the window's filter has runs to leave out.
HISTORY_DAYS = WINDOW_DAYS + 1
FAILED_SHARE, ABORTED_SHARE = 0.03, 0.01
# The planted stuck tasks: 1% of the running ones, at 10 to 20 times their type's limit.
OVERDUE_SHARE, OVERDUE_FACTOR = 0.01, 10.0
# Typical durations from 20 s to 2 h, as in the demo's store; spread (log-space sigma) 0.2 to 0.6.
MEDIAN_RANGE_S, SIGMA_RANGE = (20.0, 7200.0), (0.2, 0.6)
CHUNK_ROWS = 1_000_000
COLUMNS = ["run_id", "task_type", "started_at", "ended_at", "status"]  # the task_runs contract
INDEXES = {
    "task_runs_pkey": "PRIMARY KEY (run_id), as write_runs declares it",
    "task_runs_status_ended_at": "(status, ended_at): the window of successful runs, and the running ones",
}
# The sensor's ticks, each timed whole: (name, with the webhook sink, alerts cleared first, bar); {n}
# is the number of planted overdue runs.
TICKS = [
    ("sensor tick 1 ({n:,} new alerts, no sink)", False, True, BAR_TICK_S),
    ("sensor tick 1 ({n:,} new alerts delivered to the webhook)", True, True, BAR_DELIVERY_TICK_S),
    ("sensor tick 2 (nothing new)", True, False, BAR_TICK_S),
]
# Time in Python's full (generation 2) garbage collections during a tick, part of the steps it falls in.
FULL_COLLECTIONS = "of all the above, full garbage collections"
# What the sensor calls, timed one by one inside its evaluation: (owner, attribute, step name).
SENSOR_STEPS = [
    (AlertStore, "latest_baselines", "latest_baselines"),
    (SqlWorkflowService, "running_tasks", "running_tasks"),
    (sensors, "find_overdue_tasks", "find_overdue_tasks"),
    (AlertStore, "record_alerts", "record_alerts"),
    (sensors, "deliver_pending_alerts", "deliver_pending_alerts"),
]


class TaskTypes:
    """Each task type's lognormal duration (median and log-space sigma) and how often it runs."""

    def __init__(self, n: int, rng: np.random.Generator) -> None:
        self.names = np.array([f"task-{i:05d}" for i in range(n)], dtype=object)
        low, high = np.log(MEDIAN_RANGE_S)
        self.median_s = np.exp(rng.uniform(low, high, n))
        self.sigma = rng.uniform(*SIGMA_RANGE, n)
        # Some types run every few minutes, others a few times a day.
        weights = rng.lognormal(0.0, 1.0, n)
        self.share = weights / weights.sum()

    def limit_s(self) -> np.ndarray:
        """The true mean + K std of each type's lognormal: what the baselines should come close to."""
        mean = self.median_s * np.exp(self.sigma**2 / 2)
        return mean + K * mean * np.sqrt(np.exp(self.sigma**2) - 1)


def history_chunks(
    types: TaskTypes, n_runs: int, end: datetime, rng: np.random.Generator
) -> Iterator[pd.DataFrame]:
    """Finished runs ending in the HISTORY_DAYS before `end`, CHUNK_ROWS at a time."""
    end_us = int(end.timestamp() * 1e6)
    span_us = HISTORY_DAYS * 86_400e6
    statuses = np.array(["success", "failed", "aborted"], dtype=object)
    for first in range(0, n_runs, CHUNK_ROWS):
        n = min(CHUNK_ROWS, n_runs - first)
        task = rng.choice(len(types.names), size=n, p=types.share)
        duration_s = types.median_s[task] * np.exp(types.sigma[task] * rng.standard_normal(n))
        status = rng.choice(3, size=n, p=[1 - FAILED_SHARE - ABORTED_SHARE, FAILED_SHARE, ABORTED_SHARE])
        # A failed or aborted run stops part-way.
        duration_s = np.where(status == 0, duration_s, duration_s * rng.uniform(0.05, 1.0, n))
        ended_us = end_us - 1 - (rng.random(n) * span_us).astype(np.int64)
        started_us = ended_us - np.maximum(duration_s * 1e6, 1).astype(np.int64)
        yield pd.DataFrame(
            {
                "run_id": np.arange(first, first + n),
                "task_type": types.names[task],
                "started_at": started_us.astype("datetime64[us]"),
                "ended_at": ended_us.astype("datetime64[us]"),
                "status": statuses[status],
            }
        )


def running_runs(
    types: TaskTypes, n_running: int, first_id: int, now: datetime, rng: np.random.Generator
) -> tuple[pd.DataFrame, set[str]]:
    """Tasks running at `now`: OVERDUE_SHARE of them far past their limit, the rest below their median."""
    task = rng.choice(len(types.names), size=n_running, p=types.share)
    overdue = np.zeros(n_running, dtype=bool)
    overdue[rng.choice(n_running, size=round(n_running * OVERDUE_SHARE), replace=False)] = True
    elapsed_s = np.where(
        overdue,
        types.limit_s()[task] * OVERDUE_FACTOR * rng.uniform(1.0, 2.0, n_running),
        types.median_s[task] * rng.uniform(0.0, 1.0, n_running),
    )
    now_us = int(now.timestamp() * 1e6)
    run_id = np.arange(first_id, first_id + n_running)
    runs = pd.DataFrame(
        {
            "run_id": run_id,
            "task_type": types.names[task],
            "started_at": (now_us - (elapsed_s * 1e6).astype(np.int64)).astype("datetime64[us]"),
            "ended_at": pd.NaT,
            "status": "running",
        }
    )
    return runs, {str(i) for i in run_id[overdue]}


def copy_frames(connection: Any, frames: Iterator[pd.DataFrame]) -> int:
    """COPY the frames into task_runs; the next chunk's CSV is written while the server reads this one."""
    buffers: queue.Queue = queue.Queue(maxsize=1)

    def produce() -> None:
        try:
            for frame in frames:
                buffer = io.StringIO()
                frame.to_csv(buffer, index=False, header=False)
                buffer.seek(0)
                buffers.put((len(frame), buffer))
        except BaseException as error:  # handed to the consumer, which raises it
            buffers.put((0, error))
        buffers.put(None)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    rows = 0
    with connection.cursor() as cursor:
        while (item := buffers.get()) is not None:
            n, buffer = item
            if isinstance(buffer, BaseException):
                raise buffer
            cursor.copy_expert(f"COPY task_runs ({', '.join(COLUMNS)}) FROM STDIN WITH (FORMAT csv)", buffer)
            rows += n
    connection.commit()
    return rows


def load(url: str, args: argparse.Namespace, now: datetime) -> dict[str, Any]:
    """Create task_runs with the project's own `write_runs`, fill it by COPY, then index and analyze."""
    rng = np.random.default_rng(0)
    types = TaskTypes(args.task_types, rng)
    SqlWorkflowService(url=url).write_runs(pd.DataFrame(columns=COLUMNS))
    engine = sa.create_engine(url, connect_args={"options": "-c timezone=UTC"})
    try:
        connection = engine.raw_connection()
        try:
            with connection.cursor() as cursor:
                # The key is built once after the load, far faster than kept up row by row.
                cursor.execute("ALTER TABLE task_runs DROP CONSTRAINT task_runs_pkey")
            connection.commit()
            began = time.perf_counter()
            running, planted = running_runs(types, args.running, args.runs, now, rng)
            rows = copy_frames(connection, chain(history_chunks(types, args.runs, now, rng), [running]))
            copy_s = time.perf_counter() - began

            began = time.perf_counter()
            with connection.cursor() as cursor:
                cursor.execute("SET maintenance_work_mem = '512MB'")
                cursor.execute("ALTER TABLE task_runs ADD CONSTRAINT task_runs_pkey PRIMARY KEY (run_id)")
                cursor.execute("CREATE INDEX task_runs_status_ended_at ON task_runs (status, ended_at)")
            connection.commit()
            index_s = time.perf_counter() - began

            # What autovacuum does in a deployment: visibility map, hint bits and planner statistics,
            # so the timings see a settled table rather than one just written.
            began = time.perf_counter()
            connection.set_session(autocommit=True)
            with connection.cursor() as cursor:
                cursor.execute("VACUUM (ANALYZE) task_runs")
                cursor.execute("SELECT pg_total_relation_size('task_runs'), pg_relation_size('task_runs')")
                total_bytes, heap_bytes = cursor.fetchone()
            vacuum_s = time.perf_counter() - began
        finally:
            connection.close()
    finally:
        engine.dispose()
    return {
        "rows": rows,
        "planted_overdue": planted,
        "seconds": copy_s + index_s + vacuum_s,
        "generate_and_copy_s": copy_s,
        "indexes_s": index_s,
        "vacuum_analyze_s": vacuum_s,
        "table_mb": heap_bytes / 2**20,
        "table_with_indexes_mb": total_bytes / 2**20,
    }


def timed(steps: dict[str, float], name: str, step: Callable[[], Any]) -> Any:
    began = time.perf_counter()
    value = step()
    steps[name] = time.perf_counter() - began
    return value


def compute_baselines(
    runs_url: str, alerts_url: str, start: datetime, end: datetime
) -> tuple[dict[str, float], pd.DataFrame]:
    """What the task_duration_baselines asset does for mean_std, in its order: moments aggregated in SQL,
    limits in pandas, the window's rejected runs counted, the limits saved where the sensor reads them."""
    workflow, alert_store = SqlWorkflowService(url=runs_url), AlertStore(url=alerts_url)
    steps: dict[str, float] = {}
    began = time.perf_counter()
    moments = timed(steps, "duration_moments", lambda: workflow.duration_moments(start, end))
    baselines = timed(steps, "baselines_from_moments", lambda: baselines_from_moments(moments))
    timed(steps, "rejected_runs", lambda: workflow.rejected_runs(start, end))
    timed(steps, "save_baselines", lambda: alert_store.save_baselines(end, baselines))
    steps["total"] = time.perf_counter() - began
    return steps, baselines


def estimator_baselines(
    runs_url: str, alerts_url: str, start: datetime, end: datetime, estimator: str
) -> tuple[dict[str, float], str, pd.DataFrame]:
    """What the task_duration_baselines asset does for `estimator` at this tree's commit: (step times,
    what the limits were read from, the limits). mean_std reads the moments summed in SQL; the others a
    histogram summed in SQL where the tree has one, or else every successful run of the window."""
    workflow, alert_store = SqlWorkflowService(url=runs_url), AlertStore(url=alerts_url)
    k = DEFAULT_K[durations.estimator_named(estimator)]
    if estimator == "mean_std":
        read_with, read, fit = "duration_moments", workflow.duration_moments, baselines_from_moments
        fit_args: tuple = (k,)
    elif hasattr(durations, "baselines_from_histogram"):
        read_with, read, fit = (
            "duration_histogram",
            workflow.duration_histogram,
            durations.baselines_from_histogram,
        )
        fit_args = (estimator, k)
    else:
        read_with, read, fit = "successful_runs", workflow.successful_runs, durations.baselines_from_durations
        fit_args = (estimator, k)
    steps: dict[str, float] = {}
    began = time.perf_counter()
    window = timed(steps, "read", lambda: read(start, end))
    baselines = timed(steps, "fit", lambda: fit(window, *fit_args))
    timed(steps, "rejected_runs", lambda: workflow.rejected_runs(start, end))
    timed(steps, "save_baselines", lambda: alert_store.save_baselines(end, baselines))
    steps["total"] = time.perf_counter() - began
    return steps, read_with, baselines


def build_sensor(now: datetime) -> dg.SensorDefinition:
    """The project's long_running_tasks sensor, its clock fixed at `now`: a short task must not drift past
    its limit while the benchmark runs."""
    return sensors.build_long_running_tasks_sensor(clock=lambda: now)


class StepTimes:
    """Wraps what the sensor calls (SENSOR_STEPS) so each call adds its time to `steps`; and adds the time
    of Python's full garbage collections, wherever they fall, to FULL_COLLECTIONS."""

    def __init__(self) -> None:
        self.steps: dict[str, float] = {}
        for owner, attribute, name in SENSOR_STEPS:
            setattr(owner, attribute, self._timed(getattr(owner, attribute), name))
        self._collection_began = 0.0
        gc.callbacks.append(self._full_collection)

    def _full_collection(self, phase: str, info: dict) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._collection_began = time.perf_counter()
        else:
            self.steps[FULL_COLLECTIONS] = (
                self.steps.get(FULL_COLLECTIONS, 0.0) + time.perf_counter() - self._collection_began
            )

    def _timed(self, function: Callable, name: str) -> Callable:
        @functools.wraps(function)
        def timed_call(*args, **kwargs):
            began = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.steps[name] = self.steps.get(name, 0.0) + time.perf_counter() - began

        return timed_call


def sensor_tick(
    runs_url: str,
    alerts_url: str,
    now: datetime,
    instance: dg.DagsterInstance,
    step_times: StepTimes,
    webhook_url: str | None,
) -> tuple[dict[str, float], dict[str, Any]]:
    """One whole evaluation of the sensor, as the daemon runs it: resources built, the tick evaluated
    (limits, running tasks, overdue check, alerts recorded and logged, delivery, the result's table)."""
    sensor = build_sensor(now)
    step_times.steps = {}
    began = time.perf_counter()
    resources = {
        "workflow": SqlWorkflowService(url=runs_url),
        "alert_store": AlertStore(url=alerts_url),
        "alert_sinks": AlertSinks(webhook_url=webhook_url),
    }
    # The sensor logs a warning per new alert to the console, as in the daemon: here to /dev/null.
    with open(os.devnull, "w") as console, contextlib.redirect_stderr(console):
        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            result = sensor(context)
    total = time.perf_counter() - began
    steps = {name: step_times.steps.get(name, 0.0) for _, _, name in SENSOR_STEPS}
    steps["the rest (resources, log lines, result)"] = total - sum(steps.values())
    steps[FULL_COLLECTIONS] = step_times.steps.get(FULL_COLLECTIONS, 0.0)
    steps["total"] = total
    metadata = {}
    if isinstance(result, dg.SensorResult) and result.asset_events:
        metadata = {key: value.value for key, value in result.asset_events[0].metadata.items()}
    counts = {
        key: metadata[key]
        for key in ("new_alerts", "running", "checked", "without_baseline")
        if key in metadata
    }
    counts.setdefault("new_alerts", 0)
    return steps, counts


def alert_tables(url: str) -> list[str]:
    """Every table of the alert store but the limits: alerts, deliveries and whatever else it keeps."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            names = sa.inspect(connection).get_table_names()
    finally:
        engine.dispose()
    return sorted(set(names) - {"task_duration_baselines"})


def clear_alerts(url: str) -> None:
    """Empty the alert store, so that the next tick is a first tick again."""
    tables = ", ".join(f'"{name}"' for name in alert_tables(url))
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()


def alerted_run_ids(url: str) -> set[str]:
    return set(AlertStore(url=url).alerts()["run_id"])


class _WebhookHandler(http.server.BaseHTTPRequestHandler):
    # HTTP/1.1, as a real receiver answers: the sink's session keeps its connection open.
    protocol_version = "HTTP/1.1"
    received: Any = None  # a shared counter, set in the server's process

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.received.get_lock():
            self.received.value += 1
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _serve_webhook(received: Any, ready: Any) -> None:
    _WebhookHandler.received = received
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _WebhookHandler)
    ready.put(server.server_address[1])
    server.serve_forever()


class Webhook:
    """A JSON webhook on loopback that answers 200 to every POST and counts them, in a process of its
    own: a real receiver does not share the sensor's interpreter."""

    def __init__(self) -> None:
        context = get_context("spawn")
        self._received = context.Value("q", 0)
        ready = context.Queue()
        self._process = context.Process(target=_serve_webhook, args=(self._received, ready), daemon=True)
        self._process.start()
        self.url = f"http://127.0.0.1:{ready.get(timeout=60)}/alerts"

    @property
    def received(self) -> int:
        return self._received.value

    def close(self) -> None:
        self._process.terminate()
        self._process.join()


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(f"{field}:"))


def tick_memory(runs_url: str, alerts_url: str, now: datetime, webhook_url: str) -> dict[str, float]:
    """In this fresh process: the peak RSS of a first tick (delivering to the webhook) over the RSS
    before it, then its tracemalloc peak."""
    instance, step_times = dg.DagsterInstance.ephemeral(), StepTimes()
    AlertStore(url=alerts_url).alerts()  # the driver and dialect loaded, the store's tables checked
    clear_alerts(alerts_url)
    # Not ru_maxrss: a spawned process starts with its parent's high-water mark. Writing 5 to
    # clear_refs resets this process's own, VmHWM, to its current RSS (proc(5)).
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    before_kib = _status_kib("VmRSS")
    sensor_tick(runs_url, alerts_url, now, instance, step_times, webhook_url)
    peak_kib = _status_kib("VmHWM")
    clear_alerts(alerts_url)
    tracemalloc.start()
    sensor_tick(runs_url, alerts_url, now, instance, step_times, webhook_url)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "rss_before_mb": before_kib / 1024,
        "peak_rss_mb": peak_kib / 1024,
        "peak_rss_increase_mb": (peak_kib - before_kib) / 1024,
        "tracemalloc_peak_mb": traced_peak / 2**20,
    }


def summary(name: str, runs: list[float], bar_s: float | None) -> dict[str, Any]:
    median, low = statistics.median(runs), min(runs)
    return {
        "name": name,
        "runs_s": runs,
        "median_s": median,
        "min_s": low,
        "bar_s": bar_s,
        "median_to_bar": None if bar_s is None else median / bar_s,
        "min_to_bar": None if bar_s is None else low / bar_s,
        # Judged on the median: the figure a user would see on a typical tick.
        "met": None if bar_s is None else median <= bar_s,
    }


def step_summaries(label: str, repeats: list[dict[str, float]], bar_s: float) -> list[dict[str, Any]]:
    return [
        summary(f"{label}: {step}", [r[step] for r in repeats], bar_s if step == "total" else None)
        for step in repeats[0]
    ]


def code_version() -> dict[str, Any]:
    """The commit measured, and the tracked files that differed from it (others may be editing)."""

    def git(*arguments: str) -> str:
        return subprocess.run(["git", *arguments], cwd=ROOT, capture_output=True, text=True).stdout.rstrip()

    changed = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]
    return {"commit": git("rev-parse", "--short", "HEAD"), "uncommitted_changes": changed}


def machine(url: str) -> dict[str, Any]:
    with open("/proc/meminfo") as meminfo:
        total_kib = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:"))
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            server = connection.execute(sa.text("SHOW server_version")).scalar_one()
            settings = {
                name: connection.execute(sa.text(f"SHOW {name}")).scalar_one()
                for name in ("shared_buffers", "work_mem", "max_parallel_workers_per_gather")
            }
    finally:
        engine.dispose()
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "memory_gib": round(total_kib / 2**20, 1),
        "python": platform.python_version(),
        "postgresql": server,
        "postgresql_settings": settings,
    }


def print_table(results: list[dict[str, Any]], memory: dict[str, float]) -> None:
    print(f"\n{'step':<72} {'median s':>9} {'min s':>8} {'bar s':>6} {'median/bar':>10} {'min/bar':>8}  met")
    for r in results:
        bar = "" if r["bar_s"] is None else f"{r['bar_s']:6.0f}"
        ratios = "" if r["bar_s"] is None else f"{r['median_to_bar']:10.3f} {r['min_to_bar']:8.3f}"
        met = "" if r["met"] is None else ("met" if r["met"] else "MISSED")
        print(f"{r['name']:<72} {r['median_s']:9.3f} {r['min_s']:8.3f} {bar:>6} {ratios:>19}  {met}")
    print(
        f"memory of a first tick delivering to the webhook (fresh process): peak RSS "
        f"+{memory['peak_rss_increase_mb']:.0f} MB (from {memory['rss_before_mb']:.0f} to "
        f"{memory['peak_rss_mb']:.0f} MB), tracemalloc peak {memory['tracemalloc_peak_mb']:.0f} MB"
    )


def compare(
    before: dict[str, Any], after: dict[str, Any], before_code: dict, after_code: dict
) -> dict[str, Any]:
    """Each step both trees measured, before and after, with after/before of the medians and mins."""
    earlier = {r["name"]: r for r in before["results"]}
    rows = [
        {
            "name": r["name"],
            "before_median_s": earlier[r["name"]]["median_s"],
            "after_median_s": r["median_s"],
            "median_after_to_before": r["median_s"] / earlier[r["name"]]["median_s"],
            "before_min_s": earlier[r["name"]]["min_s"],
            "after_min_s": r["min_s"],
            "min_after_to_before": r["min_s"] / earlier[r["name"]]["min_s"],
        }
        for r in after["results"]
        if r["name"] in earlier and earlier[r["name"]]["median_s"] > 0
    ]
    heading = f"at {before_code['commit']} -> at {after_code['commit']}"
    print(f"\n{heading:<72} {'median s':>17} {'ratio':>6} {'min s':>17} {'ratio':>6}")
    for r in rows:
        print(
            f"{r['name']:<72} {r['before_median_s']:7.3f} -> {r['after_median_s']:6.3f} "
            f"{r['median_after_to_before']:6.2f} {r['before_min_s']:7.3f} -> {r['after_min_s']:6.3f} "
            f"{r['min_after_to_before']:6.2f}"
        )
    return {"before": before_code, "after": after_code, "results": rows}


def measure(args: argparse.Namespace) -> None:
    """A worker: this tree's code timed once on a loaded database (baselines, then each tick of TICKS);
    the step times as JSON on stdout. Run as a process of its own, so that two trees' code can be timed
    one after the other on the same data."""
    now = datetime.fromisoformat(args.now)
    start = now - timedelta(days=WINDOW_DAYS)
    if args.estimator:
        # In this fresh process: the limits' step times, and their peak RSS over the RSS before them.
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        before_kib = _status_kib("VmRSS")
        steps, read_with, baselines = estimator_baselines(
            args.runs_url, args.alerts_url, start, now, args.estimator
        )
        peak_kib = _status_kib("VmHWM")
        baselines.to_pickle(args.limits_file)
        memory = {"rss_before_mb": before_kib / 1024, "peak_rss_increase_mb": (peak_kib - before_kib) / 1024}
        print(json.dumps({"code": code_version(), "steps": steps, "read_with": read_with, "memory": memory}))
        return
    planted = set(json.loads(Path(args.planted).read_text()))
    if args.memory:
        webhook = Webhook()
        try:
            print(json.dumps(tick_memory(args.runs_url, args.alerts_url, now, webhook.url)))
        finally:
            webhook.close()
        return
    baselines_steps, baselines = compute_baselines(args.runs_url, args.alerts_url, start, now)
    instance, step_times, webhook = dg.DagsterInstance.ephemeral(), StepTimes(), Webhook()
    ticks, counts = {}, {}
    try:
        for template, to_webhook, clear, _ in TICKS:
            name = template.format(n=len(planted))
            if clear:
                clear_alerts(args.alerts_url)
            received = webhook.received
            ticks[name], counts[name] = sensor_tick(
                args.runs_url, args.alerts_url, now, instance, step_times, webhook.url if to_webhook else None
            )
            counts[name]["delivered_to_webhook"] = webhook.received - received
            alerted = alerted_run_ids(args.alerts_url)
            expected_delivered = len(planted) if to_webhook and clear else 0
            if alerted != planted or counts[name]["delivered_to_webhook"] != expected_delivered:
                raise SystemExit(
                    f"{name}: the store holds {len(alerted)} alerts ({len(alerted & planted)} of the "
                    f"{len(planted)} planted) and the webhook got {counts[name]['delivered_to_webhook']} "
                    f"(expected {expected_delivered}); the figures would not measure the planted workload"
                )
    finally:
        webhook.close()
    print(
        json.dumps(
            {
                "code": code_version(),
                "baselines": baselines_steps,
                "ticks": ticks,
                "counts": counts,
                "limits": {
                    "task_types": len(baselines),
                    "with_limit": int(baselines["has_limit"].sum()),
                    "successful_runs_in_window": int(baselines["n_runs"].sum()),
                },
            }
        )
    )


def run_worker(
    tree: Path,
    urls: dict[str, str],
    now: datetime,
    planted_file: Path,
    memory: bool = False,
    estimator: str | None = None,
    limits_file: Path | None = None,
) -> dict:
    """This script of `tree` (a checkout of some commit) run as a worker on the loaded database."""
    command = [
        sys.executable, str(tree / "bench" / "durations.py"), "--measure", "--now", now.isoformat(),
        "--planted", str(planted_file), "--runs-url", urls["runs"], "--alerts-url", urls[str(tree)],
    ]  # fmt: skip
    if estimator:
        command += ["--estimator", estimator, "--limits-file", str(limits_file)]
    done = subprocess.run(
        [*command, *(["--memory"] if memory else [])], cwd=tree, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"the worker of {tree} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def tree_results(n_planted: int, repeats: list[dict]) -> list[dict[str, Any]]:
    results = step_summaries("baselines", [r["baselines"] for r in repeats], BAR_BASELINES_S)
    for template, *_, bar_s in TICKS:
        name = template.format(n=n_planted)
        results += step_summaries(name, [r["ticks"][name] for r in repeats], bar_s)
    return results


def run(admin_url: str, urls: dict[str, str], trees: list[Path], args: argparse.Namespace) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)
    print(f"loading {args.runs:,} runs of {args.task_types:,} task types and {args.running:,} running ...")
    loaded = load(urls["runs"], args, now)
    planted = loaded.pop("planted_overdue")
    print(
        f"loaded {loaded['rows']:,} rows in {loaded['seconds']:.0f} s (generate + COPY "
        f"{loaded['generate_and_copy_s']:.0f} s, indexes {loaded['indexes_s']:.0f} s, vacuum analyze "
        f"{loaded['vacuum_analyze_s']:.0f} s); table {loaded['table_mb']:.0f} MB, "
        f"{loaded['table_with_indexes_mb']:.0f} MB with indexes",
        flush=True,
    )
    planted_file = Path(tempfile.gettempdir()) / f"{urls['runs'].rsplit('/', 1)[-1]}_planted.json"
    planted_file.write_text(json.dumps(sorted(planted)))
    try:
        # The machine is shared: the load average says how much the timings competed for the CPUs. With
        # trees to compare, each repetition times every tree once, in turn, starting with a different one.
        load_average = {"before_timings": os.getloadavg()[0]}
        repeats: dict[Path, list[dict]] = {tree: [] for tree in trees}
        for i in range(REPEATS):
            for tree in trees[i % len(trees) :] + trees[: i % len(trees)]:
                repeats[tree].append(run_worker(tree, urls, now, planted_file))
                timing = repeats[tree][-1]
                ticks = ", ".join(f"{steps['total']:.3f} s" for steps in timing["ticks"].values())
                print(
                    f"repetition {i + 1} at {timing['code']['commit']}: baselines "
                    f"{timing['baselines']['total']:.2f} s, ticks {ticks}",
                    flush=True,
                )
        estimators = estimator_timings(trees, urls, now, planted_file, args)
        load_average["after_timings"] = os.getloadavg()[0]
        memory = run_worker(ROOT, urls, now, planted_file, memory=True)
    finally:
        planted_file.unlink()

    results = tree_results(len(planted), repeats[ROOT])
    print_table(results, memory)
    print(
        f"1-minute load average: {load_average['before_timings']:.1f} before the timings, "
        f"{load_average['after_timings']:.1f} after ({len(os.sched_getaffinity(0))} CPUs)"
    )
    this = repeats[ROOT][-1]
    record = {
        "benchmark": "durations",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python bench/durations.py", *sys.argv[1:]]),
        "code": this["code"],
        "machine": machine(admin_url) | {"load_average_1min": load_average},
        "parameters": {
            "task_types": args.task_types,
            "historical_runs": args.runs,
            "running_tasks": args.running,
            "history_days": HISTORY_DAYS,
            "window_days": WINDOW_DAYS,
            "failed_share": FAILED_SHARE,
            "aborted_share": ABORTED_SHARE,
            "planted_overdue": len(planted),
            "overdue_factor": f"{OVERDUE_FACTOR:g} to {2 * OVERDUE_FACTOR:g} x the type's true limit",
            "median_duration_s": list(MEDIAN_RANGE_S),
            "repeats": REPEATS,
            "now": now.isoformat(),
        },
        "load": loaded | {"indexes": INDEXES},
        "baselines": this["limits"],
        "sensor": {
            "ticks": this["counts"],
            "flagged_are_the_planted": True,
            "method": "each tick is one evaluation of the project's long_running_tasks sensor (its clock "
            "fixed at the data's now), built with dg.build_sensor_context and the real resources on this "
            "database, timed from building the resources to the returned result; a tick's steps are timed by "
            "wrapping what the sensor calls. Log lines are formatted and written to /dev/null. The webhook "
            "is a loopback HTTP/1.1 server in a process of its own that answers 200 to every POST. Each "
            "repetition runs in a fresh process: the baselines, then the ticks in the order listed.",
        },
        "memory": memory
        | {
            "method": "a first tick delivering to the webhook, in a fresh process after one read of the "
            "store: peak RSS (VmHWM, reset before the tick) minus RSS before it, which counts all of the "
            "process's memory (Python objects, numpy/pandas buffers, libpq's result set); then tracemalloc's "
            "peak over a second such tick, which counts Python and numpy allocations only. The PostgreSQL "
            "server's memory is not included.",
            "bar_mb": None,
        },
        "results": results,
        "limits_by_estimator": {
            estimator: {
                "method": "each repetition a fresh process per tree computing this estimator's limits as "
                "the tree's task_duration_baselines asset does (read, fit, the window's rejected runs, "
                "saved); peak RSS (VmHWM, reset first) minus the RSS before, in the last repetition",
                "read_with": {str(tree): timings[str(tree)]["read_with"] for tree in trees},
                "results": {str(tree): timings[str(tree)]["results"] for tree in trees},
                "peak_rss_increase_mb": {
                    str(tree): timings[str(tree)]["peak_rss_increase_mb"] for tree in trees
                },
                **({"limits_vs_first_tree": timings["limits_vs_first_tree"]} if len(trees) > 1 else {}),
            }
            for estimator, timings in estimators.items()
        },
    }
    if len(trees) > 1:
        record["before_after"] = {
            repeats[tree][0]["code"]["commit"]: compare(
                {"results": tree_results(len(planted), repeats[tree])},
                {"results": results},
                repeats[tree][0]["code"],
                this["code"],
            )
            | {
                "method": "the trees' code timed in turn on one database, each repetition starting with a "
                "different tree; alert stores apart, one database per tree"
            }
            for tree in trees
            if tree != ROOT
        }
    return record


def estimator_timings(
    trees: list[Path], urls: dict[str, str], now: datetime, planted_file: Path, args: argparse.Namespace
) -> dict[str, dict]:
    """Each estimator's limits timed in every tree, in turn, `args.repeats` times; with two trees, how
    far the last tree's limits are from the first's (relative difference over the task types)."""
    found: dict[str, dict] = {}
    for estimator in args.estimators:
        repeats: dict[Path, list[dict]] = {tree: [] for tree in trees}
        limits: dict[Path, pd.DataFrame] = {}
        for i in range(args.repeats):
            for tree in trees[i % len(trees) :] + trees[: i % len(trees)]:
                limits_file = Path(tempfile.gettempdir()) / f"{uuid.uuid4().hex}_limits.pkl"
                try:
                    repeats[tree].append(
                        run_worker(
                            tree, urls, now, planted_file, estimator=estimator, limits_file=limits_file
                        )
                    )
                    limits[tree] = pd.read_pickle(limits_file).set_index("task_type")["upper_limit_s"]
                finally:
                    limits_file.unlink(missing_ok=True)
                last = repeats[tree][-1]
                steps, peak_mb = last["steps"], last["memory"]["peak_rss_increase_mb"]
                print(
                    f"{estimator} at {last['code']['commit']} ({last['read_with']}): "
                    f"{steps['total']:.2f} s (read {steps['read']:.2f} s, fit {steps['fit']:.2f} s), "
                    f"peak RSS +{peak_mb:.0f} MB",
                    flush=True,
                )
        found[estimator] = {
            str(tree): {
                "read_with": repeats[tree][-1]["read_with"],
                "results": step_summaries(
                    f"limits ({estimator})", [r["steps"] for r in repeats[tree]], BAR_BASELINES_S
                ),
                "peak_rss_increase_mb": repeats[tree][-1]["memory"]["peak_rss_increase_mb"],
            }
            for tree in trees
        }
        if len(trees) > 1:
            first, last = limits[trees[0]], limits[trees[-1]]
            relative = ((last - first) / first).abs().dropna()
            found[estimator]["limits_vs_first_tree"] = {
                "task_types_compared": len(relative),
                "median_relative_difference": float(relative.median()),
                "p99_relative_difference": float(relative.quantile(0.99)),
                "max_relative_difference": float(relative.max()),
                "over_1_percent": int((relative > 0.01).sum()),
            }
            print(f"{estimator} limits, last tree vs first: {found[estimator]['limits_vs_first_tree']}")
    return found


def _interrupt(signum: int, frame: object) -> None:
    # A terminated run unwinds like Ctrl-C, so the benchmark's databases are always dropped.
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task-types", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=10_000_000, help="historical (finished) runs")
    parser.add_argument("--running", type=int, default=100_000, help="tasks running now")
    parser.add_argument(
        "--url", default=DEFAULT_ADMIN_URL, help="a PostgreSQL URL allowed to create databases"
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the results are written")
    parser.add_argument(
        "--compare-with",
        type=Path,
        action="append",
        default=[],
        help="a checkout of an older commit holding this script in bench/, timed in turn with this one on "
        "the same data ('before_after' in the results); repeatable",
    )
    parser.add_argument(
        "--estimators",
        type=lambda names: [name for name in names.split(",") if name],
        default=["mean_std", "alert_budget"],
        help="estimators whose limits are timed each in a fresh process, comma-separated (empty: none)",
    )
    parser.add_argument("--repeats", type=int, default=REPEATS, help="repetitions of each estimator's limits")
    # A worker's arguments (run_worker).
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--memory", action="store_true", help=argparse.SUPPRESS)
    for name in ("--now", "--planted", "--runs-url", "--alerts-url", "--estimator", "--limits-file"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args)
        return

    signal.signal(signal.SIGTERM, _interrupt)
    trees = [tree.resolve() for tree in args.compare_with] + [ROOT]
    prefix = f"faultline_bench_{uuid.uuid4().hex[:8]}"
    names = {"runs": prefix} | {str(tree): f"{prefix}_alerts_{i}" for i, tree in enumerate(trees)}
    admin = sa.create_engine(args.url, isolation_level="AUTOCOMMIT")
    urls = {
        key: sa.engine.make_url(args.url).set(database=name).render_as_string(hide_password=False)
        for key, name in names.items()
    }
    created = []
    try:
        try:
            with admin.connect() as connection:
                for name in names.values():
                    connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
                    created.append(name)
            record = run(args.url, urls, trees, args)
        finally:
            with admin.connect() as connection:
                for name in created:
                    connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwritten to {args.output}")


if __name__ == "__main__":
    main()
