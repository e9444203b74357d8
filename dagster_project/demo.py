"""The demo: seed the embedded stores, run the daily graph for the latest day, print the results.

`python -m dagster_project.demo` (what `make demo` runs). Everything lands in the project's
`data/` folder, whose Dagster instance `make dev` opens in the UI afterwards.
"""

import os
import textwrap
import time
from datetime import UTC, datetime, timedelta

import dagster as dg

from faultline.demo_data.deployment_events import generate_deployment_batches
from faultline.report import ClusterReport
from resources.sql import data_dir, safe_url

DEMO_DAYS = 14
DEMO_ERROR_EVENTS = 20_000


def _prepare_dagster_home() -> None:
    home = os.environ.setdefault("DAGSTER_HOME", str(data_dir() / "dagster_home"))
    os.makedirs(home, exist_ok=True)
    config = os.path.join(home, "dagster.yaml")
    if not os.path.exists(config):
        with open(config, "w", encoding="utf-8") as file:
            file.write("telemetry:\n  enabled: false\n")


def _print_report(report: ClusterReport, path: str) -> None:
    print(
        f"\n{report.n_events} error events, {report.n_clusters} clusters, "
        f"noise {100 * report.noise_share:.1f}%   (full report: {path})\n"
    )
    print(f"{'group':<12} {'share':>7} {'events':>7}  label | hint")
    for row in report.groups.itertuples(index=False):
        text = " | ".join(filter(None, (row.label, row.hint))) or "(messages that fit no group)"
        text = textwrap.shorten(text, 120, placeholder=" …")
        print(f"{row.name:<12} {row.share_pct:>6.2f}% {row.n_events:>7}  {text}")


def main() -> None:
    _prepare_dagster_home()
    # Imported after DAGSTER_HOME is set, so the definitions see the demo's environment.
    from dagster_project.definitions import defs
    from dagster_project.jobs import error_clusters_job

    started = time.monotonic()
    event_store = defs.resources["event_store"]
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = generate_deployment_batches(end=end, days=DEMO_DAYS, n_error_events=DEMO_ERROR_EVENTS)
    event_store.create_table(replace=True)
    event_store.write_batches(rows)
    print(
        f"Seeded {len(rows)} batches ({DEMO_ERROR_EVENTS} error events over {DEMO_DAYS} days) "
        f"into {safe_url(event_store.url)}"
    )

    day = (end - timedelta(days=1)).strftime("%Y-%m-%d")
    print(f"Materializing the error-cluster graph for {day} ...")
    result = defs.resolve_job_def(error_clusters_job.name).execute_in_process(
        partition_key=day,
        instance=dg.DagsterInstance.get(),
        # The step-by-step log is in the UI; the terminal gets the result.
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )
    report: ClusterReport = result.asset_value("error_cluster_report")
    materialization = next(
        event.materialization
        for event in result.get_asset_materialization_events()
        if event.materialization.asset_key == dg.AssetKey("error_cluster_report")
    )
    _print_report(report, materialization.metadata["report_file"].value)
    print(f"\nDone in {time.monotonic() - started:.0f} s. `make dev` opens these runs in the Dagster UI.")


if __name__ == "__main__":
    main()
