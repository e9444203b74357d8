"""The resources of the code location, from environment variables with embedded defaults."""

import os

from resources.alert_sinks import AlertSinks
from resources.alert_store import AlertStore
from resources.event_store import DeploymentEventStore
from resources.io_manager import AtomicFilesystemIOManager
from resources.part_store import PartStore
from resources.report_store import ReportStore
from resources.sql import data_dir, default_store_url, env_or_default
from resources.workflow import DagsterRunsWorkflowService, SqlWorkflowService, WorkflowService


def build_workflow_service() -> WorkflowService:
    """FAULTLINE_WORKFLOW_SOURCE=dagster learns from this deployment's own runs; else a SQL table."""
    if os.environ.get("FAULTLINE_WORKFLOW_SOURCE", "sql") == "dagster":
        return DagsterRunsWorkflowService()
    return SqlWorkflowService(url=env_or_default("FAULTLINE_WORKFLOW_DB_URL", default_store_url()))


def build_resources() -> dict[str, object]:
    """Every resource, each value from its FAULTLINE_* variable when set, else the demo default."""
    workflow_db_url = env_or_default("FAULTLINE_WORKFLOW_DB_URL", default_store_url())
    return {
        # Two runs of one partition at once (a backfill over the schedule) never read a torn value.
        "io_manager": AtomicFilesystemIOManager(),
        # The day's dump and flattened events, in parts: beside the asset values unless told otherwise.
        "part_store": PartStore(directory=env_or_default("FAULTLINE_PARTS_DIR", None)),
        "event_store": DeploymentEventStore(
            url=env_or_default("FAULTLINE_EVENTS_DB_URL", default_store_url())
        ),
        "report_store": ReportStore(
            directory=env_or_default("FAULTLINE_REPORTS_DIR", str(data_dir() / "reports"))
        ),
        "workflow": build_workflow_service(),
        # Alerts live in the workflow database unless told otherwise.
        "alert_store": AlertStore(url=env_or_default("FAULTLINE_ALERTS_DB_URL", workflow_db_url)),
        "alert_sinks": AlertSinks(
            slack_token=env_or_default("FAULTLINE_SLACK_TOKEN", None),
            slack_channel=env_or_default("FAULTLINE_SLACK_CHANNEL", "#alerts"),
            webhook_url=env_or_default("FAULTLINE_ALERT_WEBHOOK_URL", None),
        ),
    }
