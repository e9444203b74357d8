"""The error side's source and the format of its records, from the deployment's settings.

FAULTLINE_ERROR_SOURCE picks the source (`table`, `files` or `dagster`); each has its own defaults for
where an event's fields are and which platform's rules clean its messages, and FAULTLINE_ERROR_*
variables change any of them:

- `table` with a payload column (the default): Qovery's engine, a JSON array of events per row with
  `scope`, `state` and `message`, errors by Qovery's error states, Qovery's cleaning rules.
- `table` with FAULTLINE_ERROR_EVENT_COLUMNS, and `files`: one event per row or line, its `message`
  field clustered, every event an error unless FAULTLINE_ERROR_STATES lists the states of errors,
  the generic cleaning rules.
- `dagster`: this deployment's failures (resources/dagster_failures.py), its own shape, generic rules.
"""

import dagster as dg
from pydantic import Field

from faultline.cleaning import DEFAULT_PROFILE, profile_named
from faultline.event_shape import BATCHED, ONE_EVENT_PER_ROW, QOVERY_ERROR_STATES, SHAPES, EventShape
from resources.dagster_failures import DAGSTER_FAILURE_SHAPE, DagsterFailures
from resources.error_source import ErrorEventSource
from resources.event_files import EventFiles
from resources.event_store import DeploymentEventStore

# FAULTLINE_ERROR_STATES's word for "every event is an error".
EVERY_EVENT = "*"
GENERIC_PROFILE = "generic"


class ErrorEventFormat(dg.ConfigurableResource):
    """Where the source's events hold their fields, which are errors, and the platform rules that clean
    their messages: the deployment's (FAULTLINE_ERROR_*), which the flatten and clean steps' Config
    may override."""

    layout: str = Field(
        default=BATCHED,
        description="batched: a JSON array of events per row; event: one JSON object per row "
        "(FAULTLINE_ERROR_LAYOUT).",
    )
    message_field: str = Field(
        default="message", description="Dotted path to an event's message (FAULTLINE_ERROR_MESSAGE_FIELD)."
    )
    state_field: str | None = Field(
        default="state", description="Dotted path to its state; None: none (FAULTLINE_ERROR_STATE_FIELD)."
    )
    scope_field: str | None = Field(
        default="scope", description="Dotted path to its scope; None: none (FAULTLINE_ERROR_SCOPE_FIELD)."
    )
    error_states: list[str] | None = Field(
        default=list(QOVERY_ERROR_STATES),
        description="States of errors; None: every event is an error (FAULTLINE_ERROR_STATES, '*').",
    )
    profile: str = Field(
        default=DEFAULT_PROFILE,
        description="The platform's cleaning rules: qovery or generic (FAULTLINE_ERROR_PROFILE).",
    )

    def shape(self) -> EventShape:
        return EventShape(
            layout=self.layout,
            message_field=self.message_field,
            state_field=self.state_field,
            scope_field=self.scope_field,
            error_states=None if self.error_states is None else tuple(self.error_states),
        )


def _names(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [name.strip() for name in value.split(",") if name.strip()]


def error_event_source(settings) -> ErrorEventSource:
    """The source FAULTLINE_ERROR_SOURCE names, configured by its FAULTLINE_ERROR_* variables."""
    retries = {
        "outage_retries": settings.source_retries,
        "outage_retry_delay_s": settings.source_retry_delay_s,
    }
    if settings.error_source == "dagster":
        return DagsterFailures(**retries)
    if settings.error_source == "files":
        given = {
            "format": settings.error_files_format,
            "time_field": settings.error_time_field,
            "payload_column": settings.error_payload_column,
        }
        return EventFiles(
            path=settings.error_files, **{k: v for k, v in given.items() if v is not None}, **retries
        )
    given = {
        "table": settings.error_table,
        "id_column": settings.error_id_column,
        "created_at_column": settings.error_time_column,
        "payload_column": settings.error_payload_column,
        "event_columns": _names(settings.error_event_columns),
    }
    return DeploymentEventStore(
        url=settings.events_db_url or settings.store_url(),
        **{k: v for k, v in given.items() if v is not None},
        **retries,
    )


def _source_defaults(settings) -> dict[str, object]:
    """The format a source's records have unless the variables say otherwise."""
    if settings.error_source == "dagster":
        shape = DAGSTER_FAILURE_SHAPE
        return {
            "layout": shape.layout,
            "message_field": shape.message_field,
            "state_field": shape.state_field,
            "scope_field": shape.scope_field,
            "error_states": None if shape.error_states is None else list(shape.error_states),
            "profile": GENERIC_PROFILE,
        }
    if settings.error_source == "files" or _names(settings.error_event_columns):
        return {
            "layout": ONE_EVENT_PER_ROW,
            "message_field": "message",
            "state_field": None,
            "scope_field": None,
            "error_states": None,
            "profile": GENERIC_PROFILE,
        }
    return {}  # Qovery's: the resource's defaults


def error_event_format(settings) -> ErrorEventFormat:
    """The source's format with the FAULTLINE_ERROR_* variables that are set in its place; an unknown
    layout or profile, or states without a state field, fail naming the variable."""
    values = _source_defaults(settings)
    if settings.error_layout is not None:
        if settings.error_layout not in SHAPES:
            raise ValueError(f"FAULTLINE_ERROR_LAYOUT={settings.error_layout!r}: use {' or '.join(SHAPES)}")
        values["layout"] = settings.error_layout
    for name in ("message_field", "state_field", "scope_field"):
        given = getattr(settings, f"error_{name}")
        if given is not None:
            values[name] = given
    if settings.error_states is not None:
        states = _names(settings.error_states) or []
        if EVERY_EVENT in states:
            values["error_states"] = None
        else:
            values["error_states"] = states
            values.setdefault("state_field", None)
            if values["state_field"] is None and settings.error_state_field is None:
                # States were listed for a source whose default has none: they are read from `state`.
                values["state_field"] = "state"
    if settings.error_profile is not None:
        try:
            profile_named(settings.error_profile)
        except ValueError as error:
            raise ValueError(f"FAULTLINE_ERROR_PROFILE: {error}") from None
        values["profile"] = settings.error_profile
    error_format = ErrorEventFormat(**values)
    try:
        error_format.shape()
    except ValueError as error:
        raise ValueError(f"FAULTLINE_ERROR_*: {error}") from None
    return error_format
