"""A run launcher whose runs the daemon's run monitoring can check, so a run whose process died is
marked failed instead of holding its queue slot forever.

Dagster's DefaultRunLauncher runs each run in a process of the code server and cannot tell the
daemon whether that process is alive: a run killed with its code server (an OOM, `kill -9`, a
restart during `docker-compose up --build`) stays STARTED, and with the queue's limit of 2, two
such runs stop every later one. This one asks the code server that launched the run whether it still
executes it; a code server that answers and does not know the run means the run's process is gone.
"""

import dagster as dg
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster._grpc.types import CanCancelExecutionRequest, CanCancelExecutionResult
from dagster._serdes import deserialize_value

# A code server that does not answer within this is taken to be restarting: its runs are given the
# benefit of the doubt until it is back, and `dagster/max_runtime` still bounds them.
HEALTH_CHECK_TIMEOUT_S = 10


class MonitoredRunLauncher(dg.DefaultRunLauncher):
    """DefaultRunLauncher (runs in a process of the code server) with a health check for monitoring."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        # The client of the code server that launched the run, from the tag the launch left on it.
        client = self._get_grpc_client_for_termination(run.run_id)
        if client is None:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "the run names no code server", transient=True)
        try:
            answer = client.can_cancel_execution(
                CanCancelExecutionRequest(run_id=run.run_id), timeout=HEALTH_CHECK_TIMEOUT_S
            )
        except Exception as error:  # noqa: BLE001 - unreachable: restarting, or a passing network fault
            return CheckRunHealthResult(
                WorkerStatus.RUNNING, f"code server not reachable ({type(error).__name__})", transient=True
            )
        if deserialize_value(answer, CanCancelExecutionResult).can_cancel:
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            "the code server that launched the run no longer executes it: its process died "
            "(killed, out of memory, or the code server restarted)",
        )
