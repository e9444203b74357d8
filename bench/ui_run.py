"""A run of `error_clusters_daily` launched as the UI launches it, against the same graph in one process.

Issue 13, item 6: "Materialize from the UI" took 2 min 16 s where the demo took 16 s. This measures
both on the demo's store (`faultline.demo_data`: 14 days, 20,000 error events, as `make demo`
seeds it), for the store's last day, in a fresh DAGSTER_HOME holding the demo's instance (the
deployment's `MonitoredRunLauncher`, its run monitoring, Dagster's default queued run coordinator):

- **launched**: a code server (`dagster api grpc`, as `dagster dev` starts one per code location)
  and the daemon (`dagster-daemon run`, which dequeues runs) are started; `dagster job launch`
  submits the run to the instance's queue with the partition's tag and config, as the UI's
  "Materialize" does; the daemon hands it to the run launcher, which starts it in a process of the
  code server. Timed from the run's creation (submit) to its end, from the run's record.
- **in_process**: `execute_in_process` of the same job and partition in this process, the demo's
  way: wall time of the call.

The code server and daemon are ready before the run is submitted (their start is not counted, as a
user's UI has them running already).

    python bench/ui_run.py --label after [--output bench/results/ui_run.json]

Run with PYTHONPATH=<another checkout> to measure that commit's code the same way; each label's
result replaces the one of that label in the output file.
"""

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "ui_run.json"
JOB = "error_clusters_daily"
PATIENCE_S = 900


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _tree() -> Path:
    """The checkout whose code is measured: where `dagster_project` is imported from."""
    import dagster_project

    return Path(dagster_project.__file__).resolve().parents[1]


def _commit(tree: Path) -> str:
    head = subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True)  # fmt: skip
    return head.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else "")


def _step_seconds(instance, run_id: str) -> dict[str, float]:
    """Each step's time from its STEP_START to its STEP_SUCCESS, from the run's event log."""
    from dagster import DagsterEventType

    started: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type == DagsterEventType.STEP_START:
            started[event.step_key] = record.timestamp
        elif event.event_type == DagsterEventType.STEP_SUCCESS:
            seconds[event.step_key] = round(record.timestamp - started[event.step_key], 1)
    return seconds


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    # A process group of its own, so stopping it stops the processes it started (the run's).
    return subprocess.Popen(
        command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_for_code_server(bin_dir: Path, port: int, env: dict[str, str], server: subprocess.Popen) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("the code server exited; see its log")
        check = [str(bin_dir / "dagster"), "api", "grpc-health-check", "-p", str(port), "-h", "127.0.0.1"]
        if subprocess.run(check, env=env, capture_output=True).returncode == 0:
            return
        time.sleep(1)
    raise SystemExit("the code server did not answer")


def launched_run(work: Path, env: dict[str, str], day: str, run_config: dict) -> dict[str, object]:
    """The run through the instance's queue, daemon and run launcher into a code server's process."""
    import dagster as dg

    bin_dir = Path(sys.executable).parent
    port = _free_port()
    workspace = work / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - grpc_server:\n      host: 127.0.0.1\n"
        f"      port: {port}\n      location_name: faultline\n"
    )
    server = _start(
        [str(bin_dir / "dagster"), "api", "grpc", "-m", "dagster_project.definitions", "-h", "127.0.0.1",
         "-p", str(port), "--location-name", "faultline"],
        env, work / "code_server.log",
    )  # fmt: skip
    daemon = None
    try:
        _wait_for_code_server(bin_dir, port, env, server)
        daemon = _start(
            [str(bin_dir / "dagster-daemon"), "run", "-w", str(workspace)], env, work / "daemon.log"
        )
        run_id = str(uuid.uuid4())
        submitted = time.monotonic()
        subprocess.run(
            [str(bin_dir / "dagster"), "job", "launch", "-w", str(workspace), "-j", JOB, "--run-id", run_id,
             "--tags", json.dumps({"dagster/partition": day}), "--config-json", json.dumps(run_config)],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        instance = dg.DagsterInstance.get()
        while True:
            run = instance.get_run_by_id(run_id)
            if run is not None and run.is_finished:
                break
            if time.monotonic() - submitted > PATIENCE_S:
                raise SystemExit(f"run {run_id} did not finish within {PATIENCE_S} s")
            time.sleep(0.5)
        record = instance.get_run_record_by_id(run_id)
        if run.status != dg.DagsterRunStatus.SUCCESS:
            raise SystemExit(f"run {run_id} ended {run.status.value}; see {work}")
        stats = instance.get_run_stats(run_id)
        return {
            "run_id": run_id,
            "executor": _executor_of(instance, run_id),
            "submit_to_success_s": round(stats.end_time - record.create_timestamp.timestamp(), 1),
            "queued_s": round(stats.launch_time - record.create_timestamp.timestamp(), 1),
            # From the launcher's start of the run's process to the run's first event in it.
            "starting_s": round(stats.start_time - stats.launch_time, 1),
            # Of which: Python and dagster up in the new process (its "Started process" event), then
            # the code location loaded and the run's plan made (to the run's first event).
            "process_up_s": round(_process_up(instance, run_id) - stats.launch_time, 1),
            "definitions_and_plan_s": round(stats.start_time - _process_up(instance, run_id), 1),
            "steps_s": _step_seconds(instance, run_id),
        }
    finally:
        if daemon is not None:
            _stop(daemon)
        _stop(server)


def _process_up(instance, run_id: str) -> float:
    """When the run's process reported itself started (dagster's "Started process for run")."""
    return next(
        record.timestamp
        for record in instance.all_logs(run_id)
        if (record.message or "").startswith("Started process for run")
    )


def _executor_of(instance, run_id: str) -> str:
    """How the run executed its steps, from its engine events ("in process" or "subprocesses")."""
    text = " ".join(record.message or "" for record in instance.all_logs(run_id))
    return "multiprocess" if "using multiprocess executor" in text else "in_process"


def in_process_run(day: str) -> dict[str, object]:
    """The same job and partition, `execute_in_process` in this process (the demo's way)."""
    import dagster as dg

    from assets.settings import Settings
    from dagster_project.definitions import build_definitions

    job = build_definitions(Settings()).resolve_job_def(JOB)
    instance = dg.DagsterInstance.get()
    started = time.monotonic()
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    result = job.execute_in_process(partition_key=day, instance=instance, run_config=quiet)
    wall_s = time.monotonic() - started
    assert result.success
    return {"wall_s": round(wall_s, 1), "steps_s": _step_seconds(instance, result.run_id)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--label", required=True, help="the result's name in the output, e.g. before or after"
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--dequeue-interval-s",
        type=float,
        help="how often the daemon takes runs off the queue (Dagster's default: 5 s); default: as the "
        "demo's instance says",
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="faultline_ui_run_"))
    home, data = work / "dagster_home", work / "data"
    home.mkdir()
    data.mkdir()
    # Only this bench's settings: a FAULTLINE_* variable of the shell would point the code elsewhere.
    for name in [name for name in os.environ if name.startswith("FAULTLINE_")]:
        del os.environ[name]
    os.environ["DAGSTER_HOME"], os.environ["FAULTLINE_DATA_DIR"] = str(home), str(data)
    env = dict(os.environ)

    from dagster_project.demo import DEMO_DAYS, DEMO_ERROR_EVENTS, DEMO_INSTANCE
    from faultline.demo_data.deployment_events import generate_deployment_batches
    from resources.event_store import DeploymentEventStore

    instance_yaml = DEMO_INSTANCE
    if args.dequeue_interval_s is not None:
        if "run_coordinator:" in instance_yaml:
            raise SystemExit("the demo's instance sets its run coordinator: drop --dequeue-interval-s")
        instance_yaml += (
            "run_coordinator:\n  module: dagster.core.run_coordinator\n  class: QueuedRunCoordinator\n"
            f"  config:\n    dequeue_interval_seconds: {args.dequeue_interval_s:g}\n"
        )
    (home / "dagster.yaml").write_text(instance_yaml)
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    store = DeploymentEventStore(url=f"sqlite:///{data / 'faultline.db'}")
    store.create_table(replace=True)
    store.write_batches(
        generate_deployment_batches(end=end, days=DEMO_DAYS, n_error_events=DEMO_ERROR_EVENTS)
    )
    day = (end - timedelta(days=1)).strftime("%Y-%m-%d")

    from assets.settings import Settings
    from dagster_project.definitions import build_definitions

    job = build_definitions(Settings()).resolve_job_def(JOB)
    run_config = job.partitioned_config.get_run_config_for_partition_key(day)

    tree = _tree()
    launched = launched_run(work, env, day, run_config)
    in_process = in_process_run(day)
    result = {
        "label": args.label,
        "dequeue_interval_s": args.dequeue_interval_s,
        "code": f"{tree} at {_commit(tree)}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "day": day,
        "launched": launched,
        "in_process": in_process,
        "ratio": round(launched["submit_to_success_s"] / in_process["wall_s"], 2),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_1min": round(os.getloadavg()[0], 1),
            "python": platform.python_version(),
        },
    }
    print(
        f"{args.label}: launched {launched['submit_to_success_s']} s from submit to success "
        f"({launched['executor']}, {launched['queued_s']} s in the queue, {launched['starting_s']} s "
        "starting the run's process), "
        f"in process {in_process['wall_s']} s: {result['ratio']}x"
    )
    for step, seconds in launched["steps_s"].items():
        print(
            f"  {step:<40} launched {seconds:>6} s   in process {in_process['steps_s'].get(step, '-'):>6} s"
        )
    previous = json.loads(args.output.read_text()) if args.output.exists() else []
    kept = [entry for entry in previous if entry.get("label") != args.label]
    args.output.write_text(json.dumps([*kept, result], indent=2) + "\n")


if __name__ == "__main__":
    main()
