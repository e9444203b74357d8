"""A second demo store in another shape: a CI system's job results as JSON-lines files, one gzip file a
day (`ci_jobs/2026-11-08.jsonl.gz`), one JSON object per job, with field names that are nobody's
default: the job's log tail under `log.tail`, its outcome under `conclusion`, the finishing time under
`finished_at`. Failed jobs carry a known root cause (`truth`), so the grouping can be scored; the
passing and cancelled ones are not errors. A few lines are broken (a runner killed mid-write) and
some logs echo a token, as real CI logs do: the first are quarantined, the second redacted.

The causes are what a CI system's failed jobs are mostly made of: tests that fail, dependencies that
do not resolve, runners killed for memory or lost, registries that refuse or limit pulls, a disk
that fills, a secret that is not set, lint.
"""

import gzip
import json
import random
import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

CONCLUSION_FAILED = "failure"
CI_FAILURE_FIELDS = {"message": "log.tail", "state": "conclusion", "scope": "job.name", "time": "finished_at"}

_REPOS = ("payments-api", "web-frontend", "ingest-worker", "billing", "search", "mobile-bff", "infra")
_JOBS = ("test", "build", "lint", "deploy-preview", "integration", "e2e")
_PACKAGES = ("react-dom", "eslint", "webpack", "typescript", "jest", "@types/node", "vite", "next")
_PY_MODULES = ("orders", "invoices", "accounts", "search_index", "ingest", "pricing", "auth")
_HOSTS = ("registry.npmjs.org", "pypi.org", "github.com", "files.pythonhosted.org", "ghcr.io")
_IMAGES = ("node:20-bullseye", "python:3.12-slim", "postgres:16", "redis:7", "golang:1.22")


def _word(rng: random.Random, k: int = 6) -> str:
    return "".join(rng.choices(string.ascii_lowercase, k=k))


def _hex(rng: random.Random, k: int) -> str:
    return "".join(rng.choices("0123456789abcdef", k=k))


@dataclass(frozen=True)
class CiCause:
    """One reason CI jobs fail: its share of failed jobs and the log tails it writes."""

    name: str
    share: float
    tails: tuple[Callable[[random.Random], str], ...]


CI_CAUSES = (
    CiCause(
        "test_assertion",
        0.30,
        (
            lambda r: (
                f"FAILED tests/test_{rng_choice(r, _PY_MODULES)}.py::test_{_word(r)} - AssertionError: "
                f"assert {r.randint(0, 999)} == {r.randint(0, 999)}\n"
                f"==== {r.randint(1, 9)} failed, {r.randint(50, 900)} passed "
                f"in {r.uniform(5, 300):.2f}s ====\n"
                "Error: Process completed with exit code 1."
            ),
            lambda r: (
                f"FAILED tests/{rng_choice(r, _PY_MODULES)}/test_api.py::test_{_word(r)}[{_word(r, 4)}] - "
                f"AssertionError: expected status 200, got {r.choice((400, 404, 409, 422, 500))}\n"
                "Error: Process completed with exit code 1."
            ),
        ),
    ),
    CiCause(
        "dependency_conflict",
        0.16,
        (
            lambda r: (
                "npm ERR! code ERESOLVE\nnpm ERR! ERESOLVE unable to resolve dependency tree\n"
                "npm ERR! Could not resolve dependency: "
                f'peer {rng_choice(r, _PACKAGES)}@"^{r.randint(15, 19)}.0.0" '
                f"from {rng_choice(r, _PACKAGES)}@{r.randint(1, 9)}.{r.randint(0, 20)}.{r.randint(0, 9)}"
            ),
            lambda r: (
                "npm ERR! code ERESOLVE\nnpm ERR! ERESOLVE could not resolve\n"
                f"npm ERR! While resolving: {rng_choice(r, _REPOS)}@{r.randint(0, 3)}.{r.randint(0, 40)}.0"
            ),
        ),
    ),
    CiCause(
        "out_of_memory",
        0.12,
        (
            lambda r: (
                f"Killed\nmake: *** [Makefile:{r.randint(10, 90)}: build] Error 137\n"
                "Error: Process completed with exit code 137."
            ),
            lambda r: (
                "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory\n"
                f" 1: 0x{_hex(r, 12)} node::Abort() [node]\nError: Process completed with exit code 134."
            ),
        ),
    ),
    CiCause(
        "registry_rate_limit",
        0.10,
        (
            lambda r: (
                f"Error response from daemon: toomanyrequests: You have reached your pull rate limit. "
                f"You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit"
                f" (pulling {rng_choice(r, _IMAGES)})"
            ),
            lambda r: (
                f"docker: Error response from daemon: toomanyrequests: You have reached your pull rate "
                f"limit. Pull of {rng_choice(r, _IMAGES)} refused after {r.randint(100, 200)} pulls "
                "in 6 hours."
            ),
        ),
    ),
    CiCause(
        "network_unreachable",
        0.10,
        (
            lambda r: (
                f"fatal: unable to access 'https://github.com/acme/{rng_choice(r, _REPOS)}.git/': "
                f"Could not resolve host: github.com"
            ),
            lambda r: (
                f"npm ERR! code ETIMEDOUT\nnpm ERR! network request to https://{rng_choice(r, _HOSTS)}/"
                f"{rng_choice(r, _PACKAGES)} failed, reason: connect ETIMEDOUT "
                f"104.16.{r.randint(0, 255)}.{r.randint(0, 255)}:443"
            ),
        ),
    ),
    CiCause(
        "runner_lost",
        0.08,
        (
            lambda r: (
                "The runner has received a shutdown signal. This can happen when the runner service "
                f"is stopped, or a manually started runner is canceled. Runner: ci-runner-{r.randint(1, 64)}"
            ),
            lambda r: (
                f"The self-hosted runner: ci-runner-{r.randint(1, 64)} lost communication with the server. "
                "Verify the machine is running and has a healthy network connection."
            ),
        ),
    ),
    CiCause(
        "disk_full",
        0.06,
        (
            lambda r: (
                f"write /var/lib/docker/tmp/GetImageBlob{r.randint(100000, 999999)}: no space left on device"
            ),
            lambda r: (
                f"OSError: [Errno 28] No space left on device: '/home/runner/work/_temp/{_hex(r, 8)}.tar'"
            ),
        ),
    ),
    CiCause(
        "missing_secret",
        0.05,
        (
            lambda r: (
                "Error: Input required and not supplied: "
                + r.choice(("token", "api-key", "registry-password"))
            ),
            lambda r: (
                "Error: Credentials could not be loaded, please check your action inputs: Could not "
                f"load credentials from any providers (Authorization: Bearer ghp_{_word(r, 36)})"
            ),
        ),
    ),
    CiCause(
        "lint",
        0.03,
        (
            lambda r: (
                f"src/{rng_choice(r, _PY_MODULES)}/models.py:{r.randint(1, 400)}:{r.randint(1, 80)}: "
                f"F401 [*] `{_word(r)}` imported but unused\nFound {r.randint(1, 30)} errors."
            ),
            lambda r: (
                f"src/{rng_choice(r, _PY_MODULES)}/views.py:{r.randint(1, 400)}:{r.randint(1, 80)}: "
                f"E501 Line too long ({r.randint(121, 180)} > 120)\nFound {r.randint(1, 30)} errors."
            ),
        ),
    ),
)


def rng_choice(rng: random.Random, options: tuple[str, ...]) -> str:
    return rng.choice(options)


# Jobs per failed job that pass or are cancelled, and the share of lines a killed runner leaves broken.
_OTHER_JOBS_PER_FAILURE = 3.0
_CANCELLED_SHARE = 0.05
_BROKEN_LINE_SHARE = 0.002


def generate_ci_jobs(
    end: datetime, days: int = 14, n_failures: int = 6_000, seed: int = 7
) -> dict[str, list[str]]:
    """The JSON lines of each UTC day before `end` (a UTC midnight), by day (`YYYY-MM-DD`): every job,
    passed, cancelled or failed, in finishing order; same arguments, same lines. The failed jobs' causes
    follow CI_CAUSES' shares exactly over the days (largest remainder)."""
    if end.utcoffset() is None or end.astimezone(UTC) != end.astimezone(UTC).replace(
        hour=0, minute=0, second=0, microsecond=0
    ):
        raise ValueError(f"end={end.isoformat()}: pass a timezone-aware UTC midnight")
    rng = random.Random(seed)
    start = end.astimezone(UTC) - timedelta(days=days)
    exact = [cause.share * n_failures for cause in CI_CAUSES]
    counts = [int(x) for x in exact]
    for i in sorted(range(len(exact)), key=lambda i: exact[i] - counts[i], reverse=True)[
        : n_failures - sum(counts)
    ]:
        counts[i] += 1
    causes = [cause for cause, count in zip(CI_CAUSES, counts, strict=True) for _ in range(count)]
    rng.shuffle(causes)
    per_day = [len(causes) // days + (d < len(causes) % days) for d in range(days)]
    files: dict[str, list[str]] = {}
    taken = 0
    for d, n in enumerate(per_day):
        day = start + timedelta(days=d)
        jobs: list[CiCause | None] = [
            *causes[taken : taken + n],
            *([None] * round(n * _OTHER_JOBS_PER_FAILURE)),
        ]
        taken += n
        rng.shuffle(jobs)
        moments = sorted(rng.randrange(86_400_000_000) for _ in jobs)
        lines = []
        for number, (cause, moment) in enumerate(zip(jobs, moments, strict=True)):
            finished = day + timedelta(microseconds=moment)
            if cause is None:
                conclusion = (
                    "cancelled" if rng.random() < _CANCELLED_SHARE / _OTHER_JOBS_PER_FAILURE else "success"
                )
                tail = (
                    "Cleaning up orphan processes"
                    if conclusion == "success"
                    else "The operation was canceled."
                )
            else:
                conclusion, tail = CONCLUSION_FAILED, rng.choice(cause.tails)(rng)
            record = {
                "run_id": f"{day:%Y%m%d}{number:06d}",
                "finished_at": finished.isoformat().replace("+00:00", "Z"),
                "conclusion": conclusion,
                "repository": f"acme/{rng.choice(_REPOS)}",
                "job": {"name": rng.choice(_JOBS), "runner": f"ci-runner-{rng.randint(1, 64)}"},
                "log": {"tail": tail, "lines": rng.randint(40, 4000)},
                "truth": cause.name if cause else None,
            }
            line = json.dumps(record)
            if rng.random() < _BROKEN_LINE_SHARE:
                line = line[: rng.randint(10, len(line) - 1)]  # a runner killed mid-write
            lines.append(line)
        files[f"{day:%Y-%m-%d}"] = lines
    return files


def write_ci_jobs(folder: Path, files: dict[str, list[str]]) -> list[Path]:
    """Each day's lines as `folder/<day>.jsonl.gz`; the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for day, lines in files.items():
        path = folder / f"{day}.jsonl.gz"
        # mtime=0: the same lines give the same bytes.
        with gzip.GzipFile(path, "wb", mtime=0) as handle:
            handle.write(("\n".join(lines) + "\n").encode())
        paths.append(path)
    return paths
