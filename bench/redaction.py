"""Throughput of redaction and flattening, on the demo's events and on loghub's lines.

Run from the repository root (or a worktree of another commit, to compare): it times the code it
imports, so `python bench/redaction.py` in two checkouts, one after the other, gives a before and
after. Each figure is the best of --repeats runs, every cache emptied before each run, so every
distinct line is redacted afresh as in a new worker process; in CPU seconds of this process
(`time.process_time`), which a shared machine's other load disturbs far less than wall time.

- demo: one day of demo batches (`generate_deployment_batches`) as the dump's rows, flattened by
  `flatten_batches` as one part is (redaction of message, scope and extra fields included); and
  `redact_secrets` alone over the flattened events' raw messages.
- loghub: the `Content` column of every `*.log_structured.csv` under --loghub, through
  `redact_secrets` line by line, and as error events flattened in batches of 8.

Results are printed and written to bench/results/redaction.json (or --out).
"""

import argparse
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path.cwd()))

from faultline.caching import clear_all  # noqa: E402
from faultline.demo_data.deployment_events import generate_deployment_batches  # noqa: E402
from faultline.flatten import flatten_batches  # noqa: E402
from faultline.redaction import redact_secrets  # noqa: E402

DEMO_END = datetime(2026, 11, 21, tzinfo=UTC)


def best_of(repeats: int, run) -> float:
    """The shortest of `repeats` timed runs of `run()`, caches emptied before each."""
    times = []
    for _ in range(repeats):
        clear_all()
        started = time.process_time()
        run()
        times.append(time.process_time() - started)
    return min(times)


def demo_dump(n_error_events: int) -> pd.DataFrame:
    rows = generate_deployment_batches(end=DEMO_END, days=1, n_error_events=n_error_events, seed=11)
    return pd.DataFrame(rows)


def loghub_lines(folder: Path) -> list[str]:
    lines = []
    for path in sorted(folder.glob("*/*.log_structured.csv")):
        lines += pd.read_csv(path, usecols=["Content"])["Content"].astype(str).tolist()
    return lines


def as_dump(lines: list[str], per_batch: int = 8) -> pd.DataFrame:
    batches = [
        json.dumps(
            [{"scope": "APP", "state": "BUILD_ERROR", "message": line} for line in lines[i : i + per_batch]]
        )
        for i in range(0, len(lines), per_batch)
    ]
    return pd.DataFrame({"id": range(len(batches)), "created_at": DEMO_END, "payload": batches})


def redact_all(texts: list[str]) -> None:
    for text in texts:
        redact_secrets(text)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20_000, help="error events of the demo day")
    parser.add_argument("--loghub", type=Path, default=Path("../shared/data/loghub"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/redaction.json"))
    args = parser.parse_args()

    dump = demo_dump(args.events)
    flattened = flatten_batches(dump)
    messages = flattened.events["message"].tolist()
    raw_messages = [
        event["message"]
        for payload in dump["payload"]
        for event in json.loads(payload)
        if event.get("state", "").endswith("_ERROR")
    ]
    lines = loghub_lines(args.loghub)
    loghub = as_dump(lines)
    n_demo_events = sum(len(json.loads(payload)) for payload in dump["payload"])
    n_demo_chars = sum(len(message) for message in raw_messages)
    n_loghub_chars = sum(len(line) for line in lines)

    figures = {
        "demo_flatten_s": best_of(args.repeats, lambda: flatten_batches(dump)),
        "demo_redact_s": best_of(args.repeats, lambda: redact_all(raw_messages)),
        "loghub_redact_s": best_of(args.repeats, lambda: redact_all(lines)),
        "loghub_flatten_s": best_of(args.repeats, lambda: flatten_batches(loghub)),
    }
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    result = {
        "commit": commit,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "repeats": args.repeats,
        "demo": {
            "rows": len(dump),
            "events": n_demo_events,
            "error_events": len(messages),
            "message_chars": n_demo_chars,
            "flatten_s": round(figures["demo_flatten_s"], 3),
            "flatten_events_per_s": round(n_demo_events / figures["demo_flatten_s"]),
            "redact_s": round(figures["demo_redact_s"], 3),
            "redact_mb_per_s": round(n_demo_chars / figures["demo_redact_s"] / 1e6, 2),
        },
        "loghub": {
            "lines": len(lines),
            "chars": n_loghub_chars,
            "redact_s": round(figures["loghub_redact_s"], 3),
            "redact_lines_per_s": round(len(lines) / figures["loghub_redact_s"]),
            "flatten_s": round(figures["loghub_flatten_s"], 3),
            "flatten_events_per_s": round(len(lines) / figures["loghub_flatten_s"]),
        },
    }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
