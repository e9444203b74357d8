"""Charts as assets: the largest error groups' daily share beside the day's report, and the flagged task
types' runs against their limits. Each is a PNG in the report folder and an image on the asset's page.
"""

import base64
import json
from datetime import date, timedelta

import dagster as dg
import pandas as pd
from pydantic import Field

from assets.error_clusters import GROUP as ERROR_CLUSTERS_GROUP
from assets.settings import DEFAULT_DAILY_PARTITIONS, retried_on_outage
from assets.task_durations import GROUP as TASK_DURATIONS_GROUP
from faultline import charts
from faultline.durations import WINDOW_DAYS
from faultline.redaction import redact_secrets
from faultline.report import table_columns, table_records
from resources.alert_store import RUNNING, AlertStore
from resources.report_store import ReportStore
from resources.workflow import WorkflowService


class ShareChartConfig(dg.Config):
    days_shown: int = Field(
        default=charts.DEFAULT_DAYS_SHOWN, description="Days drawn: the partition's day and those before it."
    )
    groups_shown: int = Field(
        default=charts.DEFAULT_GROUPS_SHOWN, description="Groups drawn: the largest by mean daily share."
    )


class LimitChartConfig(dg.Config):
    recent_hours: float = Field(
        default=24.0, description="Alerts drawn: those raised within this many hours of the newest one."
    )
    window_days: int = Field(
        default=WINDOW_DAYS,
        description="Days of successful runs drawn before the newest alert (the limits' fitting window).",
    )
    task_types_shown: int = Field(
        default=charts.DEFAULT_TASK_TYPES_SHOWN,
        description="Task types drawn: the furthest past their limit.",
    )


def report_json_name(day: str) -> str:
    """The day's report document, as error_cluster_report writes it."""
    return f"error_clusters_{day}.json"


def _image(png: bytes, alt: str) -> dg.MarkdownMetadataValue:
    # The UI's markdown allows `data:` images (its sanitizer adds the protocol for `src`), so the chart
    # shows on the asset's page with nothing to serve it.
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})")


def _table(frame: pd.DataFrame) -> dg.TableMetadataValue:
    schema = dg.TableSchema(columns=[dg.TableColumn(name, kind) for name, kind in table_columns(frame)])
    return dg.MetadataValue.table(
        [dg.TableRecord(record) for record in table_records(frame, digits=2)], schema=schema
    )


@dg.asset(
    partitions_def=DEFAULT_DAILY_PARTITIONS, group_name=ERROR_CLUSTERS_GROUP, deps=["error_cluster_report"]
)
def error_share_chart(
    context: dg.AssetExecutionContext, config: ShareChartConfig, report_store: ReportStore
) -> dg.MaterializeResult:
    """The largest error groups' share of each day's errors over the days up to this one, from the
    reports in the report folder: a PNG beside the day's report, and on this page."""
    day = context.partition_key
    last = date.fromisoformat(day)
    documents = []
    for offset in range(config.days_shown):
        text = report_store.read_text(report_json_name((last - timedelta(days=offset)).isoformat()))
        if text is not None:
            documents.append(json.loads(text))
    chart = charts.error_share_chart(documents, day, config.days_shown, config.groups_shown)
    path = report_store.write_bytes(f"error_clusters_{day}-shares.png", chart.png)
    shares = chart.data
    groups = pd.DataFrame(
        {
            "rank": range(1, len(shares.columns) + 1),
            "label": [str(label) for label in shares.columns],
            "share_on_day_pct": [float(shares[label].get(day, 0.0)) for label in shares.columns],
            "mean_share_pct": [float(shares[label].mean()) for label in shares.columns],
            "days_seen": [int((shares[label] > 0).sum()) for label in shares.columns],
        }
    )
    return dg.MaterializeResult(
        metadata={
            "chart": _image(chart.png, "The largest error groups' daily share"),
            "chart_file": dg.MetadataValue.path(str(path)),
            "days_with_a_report": len(shares),
            "groups": _table(groups),
            **({"message": chart.message} if chart.message else {}),
        }
    )


@dg.asset(group_name=TASK_DURATIONS_GROUP, deps=["task_duration_baselines"])
def duration_limit_chart(
    context: dg.AssetExecutionContext,
    config: LimitChartConfig,
    workflow: WorkflowService,
    alert_store: AlertStore,
    report_store: ReportStore,
) -> dg.MaterializeResult:
    """The task types with a running task flagged past its limit by the newest alerts: their successful
    runs, mean and upper limit, and the flagged tasks. A PNG in the report folder, and on this page."""
    with retried_on_outage(context, alert_store):
        alerts = alert_store.alerts()
    # A queue alert's limit is of waits, not of durations: it is not drawn against the runs.
    alerts = charts.recent_alerts(alerts[alerts["phase"] == RUNNING], config.recent_hours)
    runs = pd.DataFrame(columns=["task_type", "started_at", "duration_s"])
    if not alerts.empty:
        newest = alerts["raised_at"].max().to_pydatetime()
        with retried_on_outage(context, workflow):
            runs = workflow.successful_runs(newest - timedelta(days=config.window_days), newest)
        # The alerts name task types with their secrets redacted: the runs are matched, and shown, so.
        runs = runs.assign(task_type=runs["task_type"].map(lambda task_type: redact_secrets(str(task_type))))
    chart = charts.duration_limit_chart(runs, alerts, config.task_types_shown)
    path = report_store.write_bytes("duration_limits.png", chart.png)
    return dg.MaterializeResult(
        metadata={
            "chart": _image(chart.png, "Flagged task types' runs against their limits"),
            "chart_file": dg.MetadataValue.path(str(path)),
            "flagged_task_types": len(chart.data),
            "flagged_runs": int(chart.data["flagged_runs"].sum()) if len(chart.data) else 0,
            "task_types": _table(chart.data),
            **({"message": chart.message} if chart.message else {}),
        }
    )
