"""Flattening: batched deployment-event rows become one record per error event.

The event store batches events (one row holds a JSON array of them, as in Qovery's engine). A row
or event that cannot be read is quarantined with its row id and the reason; nothing is dropped
without a count.
"""

import dataclasses
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pandas as pd

from faultline.caching import BoundedCache
from faultline.redaction import NAMED_SECRET, json_unescaped, names_a_secret, redact_secrets

REQUIRED_EVENT_FIELDS = ("scope", "state", "message")

# Qovery's engine reports failures with these states; anything else is progress or success.
DEFAULT_ERROR_STATES = ("BUILD_ERROR", "DEPLOYMENT_ERROR", "DELETE_ERROR", "STOP_ERROR", "RESTART_ERROR")
DEFAULT_MAX_MESSAGE_CHARS = 100_000

EVENT_COLUMNS = ["row_id", "event_index", "created_at", "scope", "state", "message", "extra"]
QUARANTINE_COLUMNS = ["row_id", "event_index", "reason", "detail", "excerpt"]
_EXCERPT_CHARS = 200
# What an excerpt is made from: redaction reads this much, not a whole 20 MB payload, and the cut
# to 200 characters after it lies far from any secret shown, which it redacts with its context.
_EXCERPT_WINDOW = _EXCERPT_CHARS + 1024


@dataclass(frozen=True)
class FlattenedEvents:
    """Error events one per row, the records that could not be read, and what was counted."""

    events: pd.DataFrame
    quarantine: pd.DataFrame
    n_rows: int
    n_events_read: int
    n_non_error_events: int
    non_error_states: dict[str, int] = field(default_factory=dict)


def _excerpt_of_text(text: str, escaped: bool = False) -> str:
    """The start of `text`, redacted: cut to a window first, then, when it is JSON that could not be
    parsed (`escaped`), its escapes decoded (`\\u0070assword`), then redacted, then cut to 200."""
    window = text[:_EXCERPT_WINDOW]
    return redact_secrets(json_unescaped(window) if escaped else window)[:_EXCERPT_CHARS]


def _pruned(value: object, budget: int) -> tuple[object, int]:
    """The start of a JSON value, about `budget` characters of it, and the budget left."""
    if isinstance(value, str):
        return value[: max(budget, 0)], budget - len(value)
    if isinstance(value, dict):
        pruned = {}
        for key, item in value.items():
            if budget <= 0:
                break
            # The name whole: it decides whether the value is a secret.
            pruned[key], budget = _pruned(item, budget - len(key) - 4)
        return pruned, budget - 2
    if isinstance(value, list):
        items = []
        for item in value:
            if budget <= 0:
                break
            pruned, budget = _pruned(item, budget - 2)
            items.append(pruned)
        return items, budget - 2
    return value, budget - 8


def _excerpt_of_value(value: object) -> str:
    """The start of a JSON value that is no readable event, redacted field by field (a field named
    like a secret whole), cut to 200 characters: from its first `_EXCERPT_WINDOW` characters only."""
    try:
        pruned, _ = _pruned(value, _EXCERPT_WINDOW)
        return (_redacted_json(pruned) or "")[:_EXCERPT_CHARS]
    except RecursionError:
        return ""


def _redact_strings(value: object, named_secret: bool = False) -> object:
    """Every string in a JSON value redacted; every scalar under a key that names a secret replaced."""
    if isinstance(value, str):  # the common case first
        return NAMED_SECRET if named_secret else redact_secrets(value)
    if isinstance(value, dict):
        redacted = {}
        for key, item in value.items():
            redacted_key, names_secret = _judged_keys[key]
            redacted[redacted_key] = _redact_strings(item, named_secret or names_secret)
        return redacted
    if isinstance(value, list):
        return [_redact_strings(item, named_secret) for item in value]
    if named_secret and isinstance(value, int | float) and not isinstance(value, bool):
        return NAMED_SECRET
    return value


def _key_judged(key: str) -> tuple[str, bool]:
    """A field's name redacted, and whether the name says its value is a secret."""
    return redact_secrets(key), names_a_secret(key)


# Events repeat their field names, so each is judged once.
_judged_keys = BoundedCache(_key_judged, max_entries=4_096, max_key_length=200)


# What json.dumps(value, default=str) writes, without building an encoder for each event.
_EXTRA_ENCODER = json.JSONEncoder(default=str)


def _redacted_json(value: object) -> str | None:
    """`value` as JSON with no secret, or None when it is nested too deeply to walk.

    Redacted value by value, not as JSON text: JSON escapes quotes and line breaks, which hides
    `password="..."` from the rules, and a rule applied to the text could cut an escape in two.
    """
    try:
        return _EXTRA_ENCODER.encode(_redact_strings(value))
    except RecursionError:
        return None


def _decode_payload(payload: object) -> tuple[str | None, str, str]:
    """The payload as text, or None with a reason and detail when it is not readable text."""
    # pandas turns a NULL in a text column into NaN.
    if payload is None or (isinstance(payload, float) and payload != payload):
        return None, "payload_missing", "the payload column is NULL"
    if isinstance(payload, memoryview):
        payload = payload.tobytes()
    if isinstance(payload, bytes):
        try:
            return payload.decode("utf-8"), "", ""
        except UnicodeDecodeError as error:
            return None, "payload_not_utf8", f"invalid UTF-8 byte at position {error.start}"
    if isinstance(payload, str):
        return payload, "", ""
    return None, "payload_not_text", f"payload is {type(payload).__name__}, expected text"


def _why_unreadable(event: object) -> tuple[str, str]:
    """Why an event is not an object with text `scope`, `state` and `message`: the reason and detail."""
    if not isinstance(event, dict):
        return "event_not_an_object", f"event is a JSON {type(event).__name__}"
    missing = [name for name in REQUIRED_EVENT_FIELDS if name not in event or event[name] is None]
    if missing:
        return "event_missing_field", f"missing {', '.join(missing)}"
    return "event_field_not_text", "scope, state and message must be strings"


def flatten_batches(
    dump: pd.DataFrame,
    error_states: Iterable[str] = DEFAULT_ERROR_STATES,
    max_message_chars: int = DEFAULT_MAX_MESSAGE_CHARS,
) -> FlattenedEvents:
    """Explode each row's JSON array of events and keep the error events.

    `dump` has the store's columns `id`, `created_at` and `payload` (text or UTF-8 bytes). Each
    kept event carries its row id, its position in the batch, the row's `created_at`, `scope`,
    `state`, the redacted `message`, and every other field as a JSON object in `extra`.
    """
    wanted_states = frozenset(error_states)
    events: list[tuple] = []
    quarantined: list[tuple] = []
    non_error_states: Counter[str] = Counter()
    n_events_read = 0

    for row_id, created_at, payload in dump[["id", "created_at", "payload"]].itertuples(index=False):
        text, reason, detail = _decode_payload(payload)
        if text is None:
            # Decoded as far as it goes, not cut at a byte count: a cut token would escape the rules.
            raw = payload[:_EXCERPT_WINDOW] if isinstance(payload, bytes) else b""
            excerpt = _excerpt_of_text(raw.decode("utf-8", "backslashreplace"), escaped=True)
            quarantined.append((row_id, None, reason, detail, excerpt))
            continue
        try:
            batch = json.loads(text)
        except json.JSONDecodeError as error:
            quarantined.append(
                (
                    row_id,
                    None,
                    "payload_not_json",
                    f"{error.msg} at line {error.lineno} column {error.colno}",
                    _excerpt_of_text(text, escaped=True),
                )
            )
            continue
        except RecursionError:
            quarantined.append(
                (
                    row_id,
                    None,
                    "payload_not_json",
                    "arrays or objects nested too deeply",
                    _excerpt_of_text(text, escaped=True),
                )
            )
            continue
        if not isinstance(batch, list):
            quarantined.append(
                (
                    row_id,
                    None,
                    "payload_not_a_list",
                    f"payload is a JSON {type(batch).__name__}, expected an array",
                    _excerpt_of_value(batch),
                )
            )
            continue

        for event_index, event in enumerate(batch):
            n_events_read += 1
            if isinstance(event, dict):
                scope, state, message = event.get("scope"), event.get("state"), event.get("message")
                readable = isinstance(scope, str) and isinstance(state, str) and isinstance(message, str)
            else:
                readable = False
            if not readable:
                reason, detail = _why_unreadable(event)
                quarantined.append((row_id, event_index, reason, detail, _excerpt_of_value(event)))
                continue
            if state not in wanted_states:
                non_error_states[state] += 1
                continue
            if len(message) > max_message_chars:
                quarantined.append(
                    (
                        row_id,
                        event_index,
                        "message_too_long",
                        f"message has {len(message)} characters, the limit is {max_message_chars}",
                        _excerpt_of_text(message),
                    )
                )
                continue
            extra = _redacted_json(
                {key: value for key, value in event.items() if key not in REQUIRED_EVENT_FIELDS}
            )
            if extra is None:
                quarantined.append(
                    (row_id, event_index, "event_too_deeply_nested", "its other fields nest too deeply", "")
                )
                continue
            events.append(
                (
                    row_id,
                    event_index,
                    created_at,
                    redact_secrets(scope),
                    state,
                    redact_secrets(message),
                    extra,
                )
            )

    return FlattenedEvents(
        events=pd.DataFrame(events, columns=EVENT_COLUMNS),
        quarantine=pd.DataFrame(quarantined, columns=QUARANTINE_COLUMNS).astype({"event_index": "Int64"}),
        n_rows=len(dump),
        n_events_read=n_events_read,
        n_non_error_events=sum(non_error_states.values()),
        non_error_states=dict(non_error_states),
    )


def flatten_part(
    dump: pd.DataFrame,
    error_states: Iterable[str] = DEFAULT_ERROR_STATES,
    max_message_chars: int = DEFAULT_MAX_MESSAGE_CHARS,
) -> tuple[pd.DataFrame, FlattenedEvents]:
    """`flatten_batches` on one part of a dump: its events, and the rest with no events in it.

    The events are written beside the part; the rest (quarantine and counts) is small, and the parts'
    rests add up with `add_flattened_parts`.
    """
    flattened = flatten_batches(dump, error_states, max_message_chars)
    # A new empty frame, not a slice of the events, which would keep all of them alive.
    return flattened.events, dataclasses.replace(flattened, events=pd.DataFrame(columns=EVENT_COLUMNS))


def add_flattened_parts(parts: Sequence[FlattenedEvents]) -> FlattenedEvents:
    """The quarantine and counts of a whole dump from those of its parts, in order (no events)."""
    non_error_states: Counter[str] = Counter()
    for part in parts:
        non_error_states.update(part.non_error_states)
    quarantines = [part.quarantine for part in parts if len(part.quarantine)]
    return FlattenedEvents(
        events=pd.DataFrame(columns=EVENT_COLUMNS),
        quarantine=(
            pd.concat(quarantines, ignore_index=True)
            if quarantines
            else pd.DataFrame(columns=QUARANTINE_COLUMNS).astype({"event_index": "Int64"})
        ),
        n_rows=sum(part.n_rows for part in parts),
        n_events_read=sum(part.n_events_read for part in parts),
        n_non_error_events=sum(part.n_non_error_events for part in parts),
        non_error_states=dict(non_error_states),
    )
