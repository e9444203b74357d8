"""Where an event's fields sit: the shape of an error source's records, set by configuration.

Every error source hands the graph the same dump: rows of `id`, `created_at` and `payload` (text).
The shape says how a payload holds its events: `batched`, a JSON array of events per row (Qovery's
engine), or `event`, one JSON object per row (a row of a table, a line of a JSON-lines file, a
Dagster failure). Each field is a dotted path into an event (`error.message`); `error_states` None
means every event is an error. `shape_from_config` builds a shape from the flatten step's settings
(`FlattenConfig`, `DaySettings`), with errors that name the setting to change.
"""

from collections.abc import Iterable
from dataclasses import dataclass

BATCHED = "batched"
ONE_EVENT_PER_ROW = "event"
SHAPES = (BATCHED, ONE_EVENT_PER_ROW)

# Qovery's engine reports failures with these states; anything else is progress or success.
QOVERY_ERROR_STATES = ("BUILD_ERROR", "DEPLOYMENT_ERROR", "DELETE_ERROR", "STOP_ERROR", "RESTART_ERROR")

# What field_at returns for a path an event does not hold (None is a JSON null, which it may hold).
MISSING = object()


@dataclass(frozen=True)
class EventShape:
    """How a payload holds its events and where each event's fields are."""

    layout: str = BATCHED
    message_field: str = "message"
    state_field: str | None = "state"  # None: events have no state
    scope_field: str | None = "scope"  # None: events have no scope
    # States that count as errors; None: every event is an error (required when state_field is None).
    error_states: tuple[str, ...] | None = QOVERY_ERROR_STATES

    def __post_init__(self) -> None:
        if self.layout not in SHAPES:
            raise ValueError(f"layout={self.layout!r}: use {' or '.join(SHAPES)}")
        for name in ("message_field", "state_field", "scope_field"):
            path = getattr(self, name)
            if path is not None and (not path or any(not part for part in path.split("."))):
                raise ValueError(f"{name}={path!r}: a field name or a dotted path such as error.message")
        if self.state_field is None and self.error_states is not None:
            raise ValueError("error_states needs a state_field: without one every event is an error")

    @property
    def fields(self) -> tuple[str, ...]:
        """The paths the shape reads, in the order a reason names them: scope, state, message."""
        return tuple(path for path in (self.scope_field, self.state_field, self.message_field) if path)


def shape_from_config(
    layout: str = BATCHED,
    message_field: str = "message",
    state_field: str | None = "state",
    scope_field: str | None = "scope",
    error_states: Iterable[str] = QOVERY_ERROR_STATES,
    every_event_is_error: bool = False,
) -> EventShape:
    """The shape the flatten step's settings describe, or a ValueError naming the setting to change.

    An empty `state_field` or `scope_field` (as an environment variable gives it) means the events
    have none. `every_event_is_error` ignores `error_states`; without it, a state field and at least
    one error state are needed, or no event could be told to be an error.
    """
    state_field, scope_field, error_states = state_field or None, scope_field or None, tuple(error_states)
    if not every_event_is_error:
        if state_field is None:
            raise ValueError(
                "state_field is empty, so events carry no state to tell errors by: name the field that "
                "holds it, or set every_event_is_error=true"
            )
        if not error_states:
            raise ValueError(
                "error_states is empty, so no event would count as an error: list the states of errors, "
                "or set every_event_is_error=true"
            )
    return EventShape(
        layout=layout,
        message_field=message_field,
        state_field=state_field,
        scope_field=scope_field,
        error_states=None if every_event_is_error else error_states,
    )


def field_at(event: dict, path: str) -> object:
    """The value at the dotted `path` of `event`, or MISSING. A key holding the dots itself wins
    (`{"error.message": ...}`), so flat records with dotted column names read as they are."""
    if path in event:
        return event[path]
    value: object = event
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value
