"""The deployment's settings (FAULTLINE_* variables), read once when the definitions are built, and
what the assets take from them: the daily partitions and the retries through a source's outage.

Nothing here reads the environment at import: `Settings()` is the embedded demo's configuration,
`Settings.from_env()` the deployment's.
"""

import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields

import dagster as dg

from faultline.durations import CHECK_INTERVAL_S, DEFAULT_ESTIMATOR, estimator_named
from resources.outages import RetriedOnOutage, SourceUnavailableError
from resources.sql import data_dir

DEFAULT_START_DATE = "2025-01-01"
ERROR_SOURCES = ("table", "files", "dagster")

# The dump holds every event as the store has it, secrets and all: kept only until the day's flatten
# has surely read it (a few days leave room for a failed run to be re-executed), and re-read from
# the store if ever needed again.
DEFAULT_KEEP_DUMP_DAYS = 3.0
# The flattened events are redacted, and are what re-clustering a day with other settings starts
# from: kept a month, for tuning against the recent past, yet not forever, since redaction knows
# only the shapes of secrets and the messages are still the users' text.
DEFAULT_KEEP_FLATTENED_DAYS = 30.0


def daily_partitions(start_date: str = DEFAULT_START_DATE) -> dg.DailyPartitionsDefinition:
    """One partition per UTC day from `start_date`."""
    return dg.DailyPartitionsDefinition(start_date=start_date, timezone="UTC")


# The calendar the assets are defined on; the definitions put the deployment's first day in its place.
DEFAULT_DAILY_PARTITIONS = daily_partitions()


@dataclass(frozen=True)
class Settings:
    """Every FAULTLINE_* setting. A URL, token or folder set in the environment is kept as a Dagster
    EnvVar, so the UI shows the variable's name, never its value."""

    start_date: str = field(default=DEFAULT_START_DATE, metadata={"env": "FAULTLINE_START_DATE"})
    source_retries: int = field(default=3, metadata={"env": "FAULTLINE_SOURCE_RETRIES", "minimum": 0})
    source_retry_delay_s: float = field(
        default=30.0, metadata={"env": "FAULTLINE_SOURCE_RETRY_DELAY_S", "minimum": 0}
    )
    # Amperity's cadence: every 10 minutes.
    sensor_interval_s: int = field(
        default=CHECK_INTERVAL_S, metadata={"env": "FAULTLINE_SENSOR_INTERVAL_S", "minimum": 1}
    )
    # A daily run takes about a minute at a million events: two hours means it is stuck, not slow.
    max_runtime_s: int = field(default=7200, metadata={"env": "FAULTLINE_MAX_RUNTIME_S", "minimum": 60})
    keep_dump_days: float = field(
        default=DEFAULT_KEEP_DUMP_DAYS, metadata={"env": "FAULTLINE_KEEP_DUMP_DAYS", "minimum": 0.01}
    )
    keep_flattened_days: float = field(
        default=DEFAULT_KEEP_FLATTENED_DAYS,
        metadata={"env": "FAULTLINE_KEEP_FLATTENED_DAYS", "minimum": 0.01},
    )
    # alert_budget: each task type's limit expects one false alert a month; mean_std is the seed's.
    estimator: str = field(default=DEFAULT_ESTIMATOR.value, metadata={"env": "FAULTLINE_ESTIMATOR"})
    workflow_source: str = field(default="sql", metadata={"env": "FAULTLINE_WORKFLOW_SOURCE"})
    # Each half of faultline can be left out of the code location (its assets, jobs, schedules, sensors).
    error_clusters: str = field(default="on", metadata={"env": "FAULTLINE_ERROR_CLUSTERS"})
    task_durations: str = field(default="on", metadata={"env": "FAULTLINE_TASK_DURATIONS"})
    # Alerts on error groups that turn new or escalating (the error_groups asset's `alerts` Config).
    error_group_alerts: str = field(default="on", metadata={"env": "FAULTLINE_ERROR_GROUP_ALERTS"})
    # The workflow table's names, for the sql and airflow sources (resources/sources.py); lists are
    # comma-separated; unset keeps the source's default.
    workflow_table: str | None = field(default=None, metadata={"env": "FAULTLINE_WORKFLOW_TABLE"})
    workflow_run_id_columns: str | None = field(
        default=None, metadata={"env": "FAULTLINE_WORKFLOW_RUN_ID_COLUMNS"}
    )
    workflow_task_type_columns: str | None = field(
        default=None, metadata={"env": "FAULTLINE_WORKFLOW_TASK_TYPE_COLUMNS"}
    )
    workflow_started_at_column: str | None = field(
        default=None, metadata={"env": "FAULTLINE_WORKFLOW_STARTED_AT_COLUMN"}
    )
    workflow_ended_at_column: str | None = field(
        default=None, metadata={"env": "FAULTLINE_WORKFLOW_ENDED_AT_COLUMN"}
    )
    workflow_status_column: str | None = field(
        default=None, metadata={"env": "FAULTLINE_WORKFLOW_STATUS_COLUMN"}
    )
    workflow_success_states: str | None = field(
        default=None, metadata={"env": "FAULTLINE_WORKFLOW_SUCCESS_STATES"}
    )
    workflow_running_states: str | None = field(
        default=None, metadata={"env": "FAULTLINE_WORKFLOW_RUNNING_STATES"}
    )
    workflow_failed_states: str | None = field(
        default=None, metadata={"env": "FAULTLINE_WORKFLOW_FAILED_STATES"}
    )
    workflow_aborted_states: str | None = field(
        default=None, metadata={"env": "FAULTLINE_WORKFLOW_ABORTED_STATES"}
    )
    workflow_waiting_states: str | None = field(
        default=None, metadata={"env": "FAULTLINE_WORKFLOW_WAITING_STATES"}
    )
    workflow_id_separator: str | None = field(
        default=None, metadata={"env": "FAULTLINE_WORKFLOW_ID_SEPARATOR"}
    )
    # When a row was queued and the states of a queued row (resources/queue_waits.py); Airflow's
    # queued_dttm and queued by default. FAULTLINE_QUEUE_CHECKS=off leaves queue waits unchecked.
    workflow_queued_at_column: str | None = field(
        default=None, metadata={"env": "FAULTLINE_WORKFLOW_QUEUED_AT_COLUMN"}
    )
    workflow_queued_states: str | None = field(
        default=None, metadata={"env": "FAULTLINE_WORKFLOW_QUEUED_STATES"}
    )
    queue_checks: str = field(default="on", metadata={"env": "FAULTLINE_QUEUE_CHECKS"})
    airflow_base_url: str | None = field(default=None, metadata={"env": "FAULTLINE_AIRFLOW_BASE_URL"})
    # The Dagster UI's address, for a link to the run in the dagster source's alerts.
    dagster_base_url: str | None = field(default=None, metadata={"env": "FAULTLINE_DAGSTER_BASE_URL"})
    # The error side's source (resources/error_sources.py): `table`, a table of FAULTLINE_EVENTS_DB_URL
    # (Qovery's batched deployment_events by default); `files`, JSON-lines or Parquet files under
    # FAULTLINE_ERROR_FILES; `dagster`, this deployment's own failed steps, checks and runs.
    error_source: str = field(default="table", metadata={"env": "FAULTLINE_ERROR_SOURCE"})
    error_table: str | None = field(default=None, metadata={"env": "FAULTLINE_ERROR_TABLE"})
    error_id_column: str | None = field(default=None, metadata={"env": "FAULTLINE_ERROR_ID_COLUMN"})
    error_time_column: str | None = field(default=None, metadata={"env": "FAULTLINE_ERROR_TIME_COLUMN"})
    error_payload_column: str | None = field(default=None, metadata={"env": "FAULTLINE_ERROR_PAYLOAD_COLUMN"})
    error_event_columns: str | None = field(default=None, metadata={"env": "FAULTLINE_ERROR_EVENT_COLUMNS"})
    error_files: str | dg.EnvVar | None = field(
        default=None, metadata={"env": "FAULTLINE_ERROR_FILES", "env_var": True}
    )
    error_files_format: str | None = field(default=None, metadata={"env": "FAULTLINE_ERROR_FILES_FORMAT"})
    error_time_field: str | None = field(default=None, metadata={"env": "FAULTLINE_ERROR_TIME_FIELD"})
    # Where an event's fields are (resources/error_format.py); unset keeps the source's defaults.
    error_layout: str | None = field(default=None, metadata={"env": "FAULTLINE_ERROR_LAYOUT"})
    error_message_field: str | None = field(default=None, metadata={"env": "FAULTLINE_ERROR_MESSAGE_FIELD"})
    error_state_field: str | None = field(default=None, metadata={"env": "FAULTLINE_ERROR_STATE_FIELD"})
    error_scope_field: str | None = field(default=None, metadata={"env": "FAULTLINE_ERROR_SCOPE_FIELD"})
    error_states: str | None = field(default=None, metadata={"env": "FAULTLINE_ERROR_STATES"})
    error_profile: str | None = field(default=None, metadata={"env": "FAULTLINE_ERROR_PROFILE"})
    db_url: str | dg.EnvVar | None = field(
        default=None, metadata={"env": "FAULTLINE_DB_URL", "env_var": True}
    )
    events_db_url: str | dg.EnvVar | None = field(
        default=None, metadata={"env": "FAULTLINE_EVENTS_DB_URL", "env_var": True}
    )
    workflow_db_url: str | dg.EnvVar | None = field(
        default=None, metadata={"env": "FAULTLINE_WORKFLOW_DB_URL", "env_var": True}
    )
    alerts_db_url: str | dg.EnvVar | None = field(
        default=None, metadata={"env": "FAULTLINE_ALERTS_DB_URL", "env_var": True}
    )
    catalog_db_url: str | dg.EnvVar | None = field(
        default=None, metadata={"env": "FAULTLINE_CATALOG_DB_URL", "env_var": True}
    )
    parts_dir: str | dg.EnvVar | None = field(
        default=None, metadata={"env": "FAULTLINE_PARTS_DIR", "env_var": True}
    )
    reports_dir: str | dg.EnvVar | None = field(
        default=None, metadata={"env": "FAULTLINE_REPORTS_DIR", "env_var": True}
    )
    slack_token: str | dg.EnvVar | None = field(
        default=None, metadata={"env": "FAULTLINE_SLACK_TOKEN", "env_var": True}
    )
    slack_channel: str | dg.EnvVar = field(
        default="#alerts", metadata={"env": "FAULTLINE_SLACK_CHANNEL", "env_var": True}
    )
    alert_webhook_url: str | dg.EnvVar | None = field(
        default=None, metadata={"env": "FAULTLINE_ALERT_WEBHOOK_URL", "env_var": True}
    )

    def __post_init__(self) -> None:
        estimator_named(self.estimator)
        if self.workflow_source not in ("airflow", "sql", "dagster"):
            raise ValueError(
                f"FAULTLINE_WORKFLOW_SOURCE={self.workflow_source!r}: use airflow, sql or dagster"
            )
        if self.error_source not in ERROR_SOURCES:
            raise ValueError(f"FAULTLINE_ERROR_SOURCE={self.error_source!r}: use {', '.join(ERROR_SOURCES)}")
        if self.error_source == "files" and self.error_files is None:
            raise ValueError(
                "FAULTLINE_ERROR_SOURCE=files needs FAULTLINE_ERROR_FILES: the folder, file or glob to read"
            )
        for name, value in (
            ("FAULTLINE_ERROR_CLUSTERS", self.error_clusters),
            ("FAULTLINE_TASK_DURATIONS", self.task_durations),
            ("FAULTLINE_ERROR_GROUP_ALERTS", self.error_group_alerts),
            ("FAULTLINE_QUEUE_CHECKS", self.queue_checks),
        ):
            if value not in ("on", "off"):
                raise ValueError(f"{name}={value!r}: use on or off")
        daily_partitions(self.start_date)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """The settings a deployment gives in its environment; unset or empty variables keep the
        default (docker-compose passes a variable its .env leaves unset as empty)."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for setting in fields(cls):
            name = setting.metadata["env"]
            raw = environ.get(name, "").strip()
            if not raw:
                continue
            if setting.metadata.get("env_var"):
                values[setting.name] = dg.EnvVar(name)
            elif setting.type in (int, float, "int", "float"):
                values[setting.name] = _number(name, raw, setting.default, setting.metadata["minimum"])
            else:
                values[setting.name] = raw
        return cls(**values)

    def store_url(self) -> str | dg.EnvVar:
        """faultline's own database: FAULTLINE_DB_URL, else the embedded SQLite file of the demo."""
        return self.db_url or f"sqlite:///{data_dir() / 'faultline.db'}"


def _number(name: str, raw: str, default: int | float, minimum: float) -> int | float:
    """The variable as a number of the default's kind, finite and at least `minimum`."""
    kind = type(default)
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not {'an integer' if kind is int else 'a number'}") from None
    if not math.isfinite(value) or value < minimum:
        raise ValueError(f"{name}={raw!r} must be a finite number, at least {minimum}")
    return value


@contextmanager
def retried_on_outage(context: dg.AssetExecutionContext, source: RetriedOnOutage) -> Iterator[None]:
    """Retry the step when `source` is down (SourceUnavailableError), as the source's Config says;
    any other error fails the step at once, since a retry would only repeat it."""
    try:
        yield
    except SourceUnavailableError as error:
        if context.retry_number >= source.outage_retries:
            raise
        wait_s = source.outage_retry_wait_s(context.retry_number)
        context.log.warning(f"{error} Retrying in {wait_s:.0f} s.")
        raise dg.RetryRequested(max_retries=source.outage_retries, seconds_to_wait=wait_s) from error
