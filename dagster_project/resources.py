"""The resources of the code location, from environment variables with embedded defaults."""

from resources.event_store import DeploymentEventStore
from resources.report_store import ReportStore
from resources.sql import data_dir, default_store_url, env_or_default


def build_resources() -> dict[str, object]:
    """Every resource, each value from its FAULTLINE_* variable when set, else the demo default."""
    return {
        "event_store": DeploymentEventStore(
            url=env_or_default("FAULTLINE_EVENTS_DB_URL", default_store_url())
        ),
        "report_store": ReportStore(
            directory=env_or_default("FAULTLINE_REPORTS_DIR", str(data_dir() / "reports"))
        ),
    }
