"""Run by the Airflow virtualenv's Python for tests/test_airflow_real.py: migrates Airflow's database
(what `airflow db migrate` does), runs the DAG of dags/shop.py to its end `runs` times with Airflow's
own `dag.test()`, prints HISTORY, then runs it once more as the hang, until the test ends the process.

python drive.py <runs> <release file>
"""

import runpy
import sys
import time
from pathlib import Path

from airflow.utils.db import upgradedb


def main() -> None:
    runs, release = int(sys.argv[1]), sys.argv[2]
    started = time.monotonic()
    upgradedb()
    print(f"MIGRATED {time.monotonic() - started:.1f}", flush=True)
    dag = runpy.run_path(str(Path(__file__).parent / "dags" / "shop.py"))["dag"]
    for i in range(runs):
        # Durations that differ from run to run: 1.0, 1.25, 1.5 ... s of work.
        run = dag.test(run_conf={"fetch_s": 1.0 + 0.25 * i})
        print(f"RUN {run.run_id} {run.state} {time.monotonic() - started:.1f}", flush=True)
    print("HISTORY", flush=True)
    dag.test(run_conf={"release": release})


if __name__ == "__main__":
    main()
