"""Hostile days (issue 12): how long the error chain takes on a day of many distinct messages of one
shape, and on a day holding messages of 100,000 characters built to make regexes backtrack; and how
fast the cleaning's rules run on RE2 against Python's `re` as they ran before, on real messages.

    python bench/adversarial.py [--distinct 100000] [--hostile-events 200] [--before REV]
                                [--data ../shared/data/loghub] [--output bench/results/adversarial.json]

1. `distinct`: N distinct messages of one shape (9 tokens, the same first token, seven words drawn
   from 2,000, so no two share half their positions and each stays a template of its own: the case
   that made mining compare every message with every template, and Doc2Vec train every one), one
   error event each, through the chain's steps as `faultline.pipeline.run_day` runs them. Each
   step timed, in wall seconds and in CPU seconds (the worker processes' own for flatten and for
   reading the parts; the machine is shared, and CPU time is what the load does not inflate); the
   clean step split into reading the parts (framing and template tokens, in worker processes),
   mining the templates, and cleaning them. The issue's aim: clean, mine, vectorize and cluster
   in under a minute.
2. `hostile`: a day of that many events, each a message of 100,000 characters of one of the shapes
   of `tests/test_adversarial_text.py` (nested dots, runs of `@`, `=`, quotes, base64, ...) in
   Qovery's framing; the same steps timed.
3. `re2_vs_re`: the cleaning as it is against the cleaning at `--before` (the last commit before its
   rules moved to RE2, loaded from git as a module of its own), on the same texts in one process,
   alternating, best of `--repeat`: the framing taken off every flattened demo message (the scope's
   rule), and the whole cleaning of the demo's distinct templates and of every loghub message
   (the URL and host rules). Ratio = now / before; below 1 is faster.
"""

import argparse
import importlib.util
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

import faultline.cleaning
from faultline.caching import clear_all
from faultline.cleaning import clean_messages, combine_corpus_parts, corpus_part, user_text_and_hint
from faultline.clustering import DEFAULT_MAX_TEMPLATES
from faultline.demo_data.deployment_events import generate_deployment_batches
from faultline.flatten import EVENT_COLUMNS, add_flattened_parts, flatten_part
from faultline.pipeline import (
    cluster_corpus,
    report_clusters,
    resolve_workers,
    vectorize_corpus,
    write_parts,
)
from resources.frame_parts import PartWriter, map_parts

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "adversarial.json"
BAR_SECONDS = 60  # the aim for a day of 100,000 distinct messages of one shape
# The last commit before the cleaning's rules moved to RE2.
BEFORE_RE2 = "8beddf9"
SHAPES = {
    "nested dots": "a.",
    "dotted digits": "1.",
    "dashed words": "a-",
    "at signs": "@",
    "equals signs": "=",
    "single quotes": "'",
    "double quotes": '"',
    "slashes": "/",
    "colons": ":",
    "digits": "7",
    "backslashes": "\\",
    "scope labels": "scope:",
    "scheme-like": "a:/",
}


def distinct_messages(n: int, seed: int = 5) -> list[str]:
    draw = random.Random(seed)
    words = ["".join(draw.choices("abcdefghijklmnopqrstuvwxyz", k=7)) for _ in range(2_000)]
    messages: set[str] = set()
    while len(messages) < n:
        messages.add(" ".join(["task", *draw.choices(words, k=7), "failed"]))
    return sorted(messages)


def hostile_messages(n: int, chars: int = 100_000) -> list[str]:
    """`n` framed messages of `chars` characters, each of one shape, the shapes in turn."""
    draw = random.Random(7)
    base64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    shapes = [*SHAPES.values(), None]
    messages = []
    for index in range(n):
        piece = shapes[index % len(shapes)]
        body = (piece * chars)[: chars // 3] if piece else "".join(draw.choices(base64, k=chars // 3))
        messages.append(
            f" * Scope: Build platform {body} 'app-{index}' with id 'z{index}'\n MESSAGE FOR THE USER\n"
            f" Error message: build {index} failed: {body}\n Hint: {body}"[:chars]
        )
    return messages


def message_dump(messages: list[str]) -> pd.DataFrame:
    """One batch of one error event per message, as `bench/accuracy.py` makes them."""
    return pd.DataFrame(
        {
            "id": range(1, len(messages) + 1),
            "created_at": pd.Timestamp("2026-01-01", tz="UTC"),
            "payload": [
                json.dumps([{"scope": "LOG", "state": "DEPLOYMENT_ERROR", "message": message}])
                for message in messages
            ],
        }
    )


def _timed_in_worker(function: Callable, frame: pd.DataFrame) -> tuple[object, float]:
    """`function(frame)` and the CPU seconds it took, in the worker process that ran it."""
    start = time.process_time()
    done = function(frame)
    return done, time.process_time() - start


def _flatten_timed(frame: pd.DataFrame) -> tuple[pd.DataFrame, tuple[object, float]]:
    (events, summary), seconds = _timed_in_worker(flatten_part, frame)
    return events, (summary, seconds)


def _corpus_part_timed(frame: pd.DataFrame) -> tuple[object, float]:
    return _timed_in_worker(corpus_part, frame)


class Stages:
    """Wall and CPU seconds of each stage; the machine is shared, so CPU time says more of the work."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        """Time the block; CPU seconds of this process (its threads), to which `worker_cpu` adds."""
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - wall
            self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - cpu

    def worker_cpu(self, name: str, seconds: float) -> None:
        self.cpu[name] = self.cpu.get(name, 0.0) + seconds

    @contextmanager
    def calls(self, module, name: str, stage: str):
        """Every call of `module.name` while inside counted as `stage` (and taken out of the caller's)."""
        function = getattr(module, name)

        def timed(*args, **kwargs):
            with self.stage(stage):
                return function(*args, **kwargs)

        setattr(module, name, timed)
        try:
            yield
        finally:
            setattr(module, name, function)


def run_chain(messages: list[str], workers: int) -> dict[str, object]:
    """The day's chain on `messages`, step by step as `run_day` runs it, each step timed."""
    stages = Stages()
    with tempfile.TemporaryDirectory() as folder:
        dump = write_parts(message_dump(messages), Path(folder) / "dump")
        (Path(folder) / "flattened").mkdir()
        # flatten_dump and clean_corpus's first half, as they run, with each part's CPU time.
        with stages.stage("flatten"):
            writer = PartWriter(Path(folder) / "flattened", EVENT_COLUMNS)
            done = map_parts(_flatten_timed, dump, resolve_workers(workers), target=writer)
            flattened = add_flattened_parts([summary for summary, _ in done])
            events = writer.commit()
        stages.worker_cpu("flatten", sum(seconds for _, seconds in done))
        with stages.stage("read parts (framing, template tokens)"):
            done = map_parts(_corpus_part_timed, events, resolve_workers(workers))
            parts = [part for part, _ in done]
        stages.worker_cpu("read parts (framing, template tokens)", sum(seconds for _, seconds in done))
        with (
            stages.stage("combine parts"),
            stages.calls(faultline.cleaning, "mine_templates", "mine templates"),
            stages.calls(faultline.cleaning, "clean_messages", "clean templates and hints"),
        ):
            corpus = combine_corpus_parts(parts)
        for clock in (stages.wall, stages.cpu):
            clock["combine parts"] -= clock["mine templates"] + clock["clean templates and hints"]
        with stages.stage("vectorize"):
            vectors = vectorize_corpus(corpus)
        with stages.stage("cluster"):
            clustered = cluster_corpus(corpus, vectors)
        with stages.stage("report"):
            report = report_clusters(clustered)
    aimed = [step for step in stages.wall if step not in ("flatten", "report")]
    return {
        "events": len(messages),
        "quarantined": len(flattened.quarantine),
        "variants": len(corpus.variants),
        "templates": int(corpus.variants["template"].nunique()),
        "vectorized_templates": len(vectors.texts),
        "left_out_templates": vectors.left_out_texts,
        "left_out_events": vectors.left_out_events,
        "clusters": report.n_clusters,
        "wall_s": {step: round(value, 2) for step, value in stages.wall.items()},
        "cpu_s": {step: round(value, 2) for step, value in stages.cpu.items()},
        "clean_mine_vectorize_cluster_wall_s": round(sum(stages.wall[step] for step in aimed), 2),
        "clean_mine_vectorize_cluster_cpu_s": round(sum(stages.cpu[step] for step in aimed), 2),
        "total_wall_s": round(sum(stages.wall.values()), 2),
        "total_cpu_s": round(sum(stages.cpu.values()), 2),
        "peak_rss_mb_this_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def cleaning_before(revision: str):
    """`faultline/cleaning.py` as it was at `revision`, imported as a module of its own."""
    show = ["git", "show", f"{revision}:faultline/cleaning.py"]
    source = subprocess.run(show, cwd=REPO, capture_output=True, text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "cleaning_before_re2.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("cleaning_before_re2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cpu_time_of(function: Callable[[], object]) -> float:
    clear_all()
    start = time.process_time()
    function()
    return time.process_time() - start


def compare(now: Callable[[], object], before: Callable[[], object], repeat: int) -> dict[str, float]:
    """CPU seconds of both, alternating, the best of `repeat` each: the load falls on both alike."""
    now_s, before_s = float("inf"), float("inf")
    for _ in range(repeat):
        before_s = min(before_s, cpu_time_of(before))
        now_s = min(now_s, cpu_time_of(now))
    ratio = round(now_s / before_s, 3)
    return {"now_cpu_s": round(now_s, 4), "before_cpu_s": round(before_s, 4), "ratio": ratio}


def demo_messages(n_events: int) -> pd.Series:
    rows = pd.DataFrame(generate_deployment_batches(end=datetime(2026, 11, 22, tzinfo=UTC), days=1,
                                                    n_error_events=n_events, seed=7))  # fmt: skip
    events, _ = flatten_part(rows)
    return events["message"].astype(str)


def loghub_messages(data: Path) -> pd.Series:
    files = sorted(data.glob("*/*_2k.log_structured.csv"))
    return pd.concat([pd.read_csv(path)["Content"].astype(str) for path in files], ignore_index=True)


def re2_against_re(before_revision: str, data: Path | None, repeat: int) -> dict[str, object]:
    before = cleaning_before(before_revision)
    clean_messages(pd.Series(["a.com", "http://a"]))  # RE2's rules compile at their first use: not timed
    demo = demo_messages(20_000)
    demo_texts = pd.Series(sorted({user_text_and_hint(message)[0] for message in demo}))
    figures: dict[str, object] = {
        "demo: framing of every message": {
            "texts": len(demo),
            **compare(
                lambda: [user_text_and_hint(message) for message in demo],
                lambda: [before.user_text_and_hint(message) for message in demo],
                repeat,
            ),
        },
        "demo: cleaning of the distinct user-facing texts": {
            "texts": len(demo_texts),
            **compare(lambda: clean_messages(demo_texts), lambda: before.clean_messages(demo_texts), repeat),
        },
    }
    if data is not None:
        loghub = loghub_messages(data)
        figures["loghub: cleaning of every message"] = {
            "texts": len(loghub),
            **compare(lambda: clean_messages(loghub), lambda: before.clean_messages(loghub), repeat),
        }
        same = (clean_messages(loghub) == before.clean_messages(loghub)).all()
        figures["loghub: every message cleaned as before"] = bool(same)
    figures["demo: every text cleaned as before"] = bool(
        (clean_messages(demo_texts) == before.clean_messages(demo_texts)).all()
    )
    return figures


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--distinct", type=int, default=100_000, help="distinct messages of one shape")
    parser.add_argument("--hostile-events", type=int, default=200, help="messages of 100,000 characters")
    parser.add_argument("--workers", type=int, default=0, help="flatten and clean processes; 0: one per core")
    parser.add_argument("--before", default=BEFORE_RE2, help="commit of the cleaning that RE2 is compared to")
    parser.add_argument("--data", type=Path, help="loghub-2k folders, for the RE2 comparison on loghub")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    results: dict[str, object] = {
        "command": " ".join(["python", "bench/adversarial.py", *(argv or sys.argv[1:])]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "product_git_commit": subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip(),
        "max_templates": DEFAULT_MAX_TEMPLATES,
        "bar_s": BAR_SECONDS,
    }
    for name, messages in (
        ("distinct", distinct_messages(args.distinct)),
        ("hostile", hostile_messages(args.hostile_events)),
    ):
        load = load_average()
        run = run_chain(messages, args.workers)
        run["load_average_1m"] = [load, load_average()]
        results[name] = run
        print(f"{name}: {json.dumps(run, indent=1)}", flush=True)
    results["re2_vs_re"] = re2_against_re(args.before, args.data, args.repeat)
    print(json.dumps(results["re2_vs_re"], indent=1))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
