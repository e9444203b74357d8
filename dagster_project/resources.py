"""The resources of the code location, from the deployment's settings with embedded defaults."""

from assets.settings import Settings
from resources.alert_sinks import AlertSinks
from resources.alert_store import AlertStore
from resources.error_catalog import ErrorCatalogStore
from resources.error_sources import error_event_format, error_event_source
from resources.io_manager import AtomicFilesystemIOManager
from resources.part_store import PartStore
from resources.report_store import ReportStore
from resources.sources import workflow_service
from resources.sql import data_dir


def build_resources(settings: Settings) -> dict[str, object]:
    """Every resource, each value from its FAULTLINE_* setting when given, else the demo default."""
    return {
        # Two runs of one partition at once (a backfill over the schedule) never read a torn value.
        "io_manager": AtomicFilesystemIOManager(),
        # The day's dump and flattened events, in parts: beside the asset values unless told otherwise.
        "part_store": PartStore(directory=settings.parts_dir),
        # The error side's source (FAULTLINE_ERROR_SOURCE) and where its records hold their fields.
        "event_store": error_event_source(settings),
        "error_format": error_event_format(settings),
        "report_store": ReportStore(directory=settings.reports_dir or str(data_dir() / "reports")),
        "workflow": workflow_service(settings),
        # faultline's own tables (limits, alerts, deliveries) never go into a source it reads: its own
        # database unless told otherwise, so a read-only role on the workflow database is enough.
        "alert_store": AlertStore(url=settings.alerts_db_url or settings.store_url()),
        # The error groups across days: faultline's own database too, unless told otherwise.
        "error_catalog": ErrorCatalogStore(url=settings.catalog_db_url or settings.store_url()),
        "alert_sinks": AlertSinks(
            slack_token=settings.slack_token,
            slack_channel=settings.slack_channel,
            webhook_url=settings.alert_webhook_url,
        ),
    }
