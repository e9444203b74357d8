"""The DAG tests/test_airflow_real.py has a real Airflow run (its own virtualenv, not faultline's).

Every kind of task instance faultline reads: Python, Bash in a task group (a dotted task id), a
mapped task, a task that fails, one that fails its first try and succeeds on its retry, a deferred
task and a reschedule-mode sensor. Run with `release` set, everything after `go` but `fetch` is
skipped, and fetch hangs: its first try until the file `release` names appears, then fails; its
retry for good.
"""

import os
import time
from datetime import timedelta

from airflow.exceptions import AirflowSkipException
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.sensors.python import PythonSensor
from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
from airflow.sdk import DAG, BaseOperator, TaskGroup, task

NAP_S = 2.0
HANG_S = 3600


class Nap(BaseOperator):
    """Defers to Airflow's triggerer for NAP_S, then ends."""

    def execute(self, context):
        self.defer(trigger=TimeDeltaTrigger(timedelta(seconds=NAP_S)), method_name="woken")

    def woken(self, context, event=None):
        return None


# After go even when go is skipped, so the hang's run has skipped the rest before fetch hangs.
@task(retries=1, retry_delay=timedelta(seconds=0), trigger_rule="none_failed")
def fetch(params=None, ti=None):
    if not params["release"]:
        time.sleep(float(params["fetch_s"]))
        return
    if ti.try_number == 1:
        while not os.path.exists(params["release"]):
            time.sleep(0.1)
        raise TimeoutError("try 1 hung until the test released it")
    time.sleep(HANG_S)


@task
def go(params=None):
    """Skipped in the hang's run, and so is everything after it."""
    if params["release"]:
        raise AirflowSkipException("the hang's run runs fetch alone")


@task
def part(i):
    time.sleep(0.3)


@task(retries=1, retry_delay=timedelta(seconds=0))
def flaky(ti=None):
    if ti.try_number == 1:
        raise RuntimeError("the first try fails")
    time.sleep(0.5)


@task
def broken():
    raise RuntimeError("this task always fails")


with DAG("shop.daily", schedule=None, catchup=False, params={"fetch_s": 1.0, "release": ""}) as dag:
    start = go()
    start >> fetch()
    with TaskGroup("load"):
        rows = BashOperator(task_id="rows", bash_command="sleep 1")
    # Pokes three times, a second apart, giving its slot back between pokes.
    wait = PythonSensor(
        task_id="wait_for_partner",
        mode="reschedule",
        poke_interval=1,
        python_callable=lambda task_reschedule_count: task_reschedule_count >= 2,
    )
    start >> [part.expand(i=[0, 1, 2]), flaky(), broken(), rows, wait, Nap(task_id="nap")]
