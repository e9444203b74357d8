"""Where an event's fields sit: the shape of an error source's records, set by configuration.

Every error source hands the graph the same dump: rows of `id`, `created_at` and `payload` (text).
The shape says how a payload holds its events: `batched`, a JSON array of events per row (Qovery's
engine), or `event`, one JSON object per row (a row of a table, a line of a JSON-lines file, a
Dagster failure). Each field is a dotted path into an event (`error.message`); `error_states` None
means every event is an error.
"""

from dataclasses import dataclass

BATCHED = "batched"
ONE_EVENT_PER_ROW = "event"
SHAPES = (BATCHED, ONE_EVENT_PER_ROW)

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
    error_states: tuple[str, ...] | None = (
        "BUILD_ERROR",
        "DEPLOYMENT_ERROR",
        "DELETE_ERROR",
        "STOP_ERROR",
        "RESTART_ERROR",
    )

    def __post_init__(self) -> None:
        if self.layout not in SHAPES:
            raise ValueError(f"layout={self.layout!r}: use {' or '.join(SHAPES)}")
        for name in ("message_field", "state_field", "scope_field"):
            path = getattr(self, name)
            if path is not None and (not path or any(not part for part in path.split("."))):
                raise ValueError(f"{name}={path!r}: a field name or a dotted path such as error.message")
        if self.state_field is None and self.error_states is not None:
            raise ValueError("error_states needs a state_field: without one every event is an error")


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
