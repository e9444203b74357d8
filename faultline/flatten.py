"""Flattening: the rows of a dump become one record per error event.

Where a row's events are and which fields an event's message, state and scope are in is the
`EventShape` (faultline/event_shape.py): a JSON array of events per row (Qovery's engine, the
default) or one JSON object per row, fields at dotted paths. A row or event that cannot be read, or
holds a field longer than its bound, is quarantined with its row id and the reason; nothing is
dropped without a count. Every reason is counted exactly; the first rows of each are kept as a
sample, so a payload of ten million bad elements costs a count, not ten million rows.
"""

import dataclasses
import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import pandas as pd

from faultline.caching import BoundedCache
from faultline.event_shape import MISSING, ONE_EVENT_PER_ROW, QOVERY_ERROR_STATES, EventShape, field_at
from faultline.redaction import NAMED_SECRET, json_unescaped, names_a_secret, redact_secrets

DEFAULT_ERROR_STATES = QOVERY_ERROR_STATES
DEFAULT_MAX_MESSAGE_CHARS = 100_000
# The other fields' bounds, far above what Qovery's engine writes (a scope is a word, a state an
# enum's name, the other fields a few ids): what passes them is not an event the analysis can use.
MAX_SCOPE_CHARS = 10_000
MAX_STATE_CHARS = 1_000
MAX_EXTRA_CHARS = 100_000  # every field the shape does not read, as JSON
MAX_EVENT_CHARS = 200_000  # scope, state, message and the other fields together
# Distinct states of non-error events counted by name; the rest are counted together.
MAX_COUNTED_STATES = 1_000
OTHER_STATES = "(other states)"
# A row this short holds no event past MAX_EXTRA_CHARS or MAX_EVENT_CHARS, so its events need not
# be measured: JSON writes a character of the row in 12 at most (an emoji as `\ud83d\ude00`), a
# number in 4.5 (`1e15` is 1000000000000000.0).
_WITHIN_BOUNDS = MAX_EXTRA_CHARS // 12
# Quarantined records kept as a sample, per reason; all of them are counted.
QUARANTINE_SAMPLE_PER_REASON = 100

EVENT_COLUMNS = ["row_id", "event_index", "created_at", "scope", "state", "message", "extra"]
QUARANTINE_COLUMNS = ["row_id", "event_index", "reason", "detail", "excerpt"]
_EXCERPT_CHARS = 200
# What an excerpt is made from: redaction reads this much, not a whole 20 MB payload, and the cut
# to 200 characters after it lies far from any secret shown, which it redacts with its context.
_EXCERPT_WINDOW = _EXCERPT_CHARS + 1024


@dataclass(frozen=True)
class FlattenedEvents:
    """Error events one per row, a sample of the records that could not be read, and the counts."""

    events: pd.DataFrame
    quarantine: pd.DataFrame  # the first QUARANTINE_SAMPLE_PER_REASON records of each reason
    n_rows: int
    n_events_read: int
    n_non_error_events: int
    non_error_states: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(
        default_factory=dict
    )  # every record that could not be read, by reason
    n_rows_quarantined: int = 0  # whole rows among them (their events unknown)

    @property
    def n_quarantined(self) -> int:
        return sum(self.quarantined.values())


def _empty_quarantine() -> pd.DataFrame:
    return pd.DataFrame(columns=QUARANTINE_COLUMNS).astype({"event_index": "Int64"})


class _Quarantine:
    """The records that could not be read: every reason counted, the first of each kept with its
    excerpt (made only for those, as it costs a redaction), in the order of the dump."""

    def __init__(self) -> None:
        self.sample: list[tuple[tuple[int, int], tuple]] = []  # (where in the dump, the record)
        self.counts: Counter[str] = Counter()
        self.n_rows = 0
        self.row = -1  # the position in the dump of the row being read

    def next_row(self) -> None:
        self.row += 1

    def add(
        self, row_id, event_index: int | None, reason: str, detail: str, excerpt: Callable[[], str]
    ) -> None:
        self.counts[reason] += 1
        self.n_rows += event_index is None
        if self.counts[reason] <= QUARANTINE_SAMPLE_PER_REASON:
            where = (self.row, -1 if event_index is None else event_index)
            self.sample.append((where, (row_id, event_index, reason, detail, excerpt())))

    def add_not_objects(self, row_id, batch: list, indexes: list[int]) -> None:
        """The elements of a batch at `indexes`, which are no JSON objects: counted at once (a payload
        of ten million numbers costs a count), the first of them sampled."""
        reason = "event_not_an_object"
        room = max(QUARANTINE_SAMPLE_PER_REASON - self.counts[reason], 0)
        self.counts[reason] += len(indexes)
        for index in indexes[:room]:
            record = (
                row_id,
                index,
                reason,
                _not_an_object(batch[index]),
                _excerpt_of_value(batch[index]),
            )
            self.sample.append(((self.row, index), record))

    def frame(self) -> pd.DataFrame:
        records = [record for _, record in sorted(self.sample, key=lambda entry: entry[0])]
        return pd.DataFrame(records, columns=QUARANTINE_COLUMNS).astype({"event_index": "Int64"})


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


def _not_an_object(value: object) -> str:
    return f"event is a JSON {type(value).__name__}"


def _scalar_text(value: object) -> str | None:
    """A state's or scope's text: a string as it is, a number or boolean as its JSON text (`500`,
    `true`, `1.5`), so that `error_states: ["500"]` matches a numeric status; else None."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return _EXTRA_ENCODER.encode(value)
    return None


def _fields_as_text(
    shape: EventShape, scope: object, state: object, message: object
) -> tuple[str, str, str, str]:
    """An event's scope and state as text, or the reason and detail why its fields cannot be read:
    a field the shape names is missing or null, the message is no string, or the state or scope is
    an array or object. Returns (scope, state, reason, detail), the reason "" when they can be read."""
    values = {shape.scope_field: scope, shape.state_field: state, shape.message_field: message}
    missing = [path for path in shape.fields if values[path] is None]
    if missing:
        return "", "", "event_missing_field", f"missing {', '.join(missing)}"
    if not isinstance(message, str):
        kind = type(message).__name__
        return "", "", "event_field_not_text", f"{shape.message_field} is a JSON {kind}, expected a string"
    scope_text = "" if shape.scope_field is None else _scalar_text(scope)
    state_text = "" if shape.state_field is None else _scalar_text(state)
    for path, value, text in ((shape.scope_field, scope, scope_text), (shape.state_field, state, state_text)):
        if text is None:
            detail = f"{path} is a JSON {type(value).__name__}, expected a string, number or boolean"
            return "", "", "event_field_not_text", detail
    return scope_text, state_text, "", ""


def _at(event: dict, path: str | None) -> object:
    """The value at `path`, None where the event has none (as `dict.get` gives it)."""
    if path is None:
        return ""
    value = field_at(event, path)
    return None if value is MISSING else value


def _without_fields(event: dict, paths: tuple[str, ...]) -> dict:
    """The event less the fields at `paths` (a copy: the event is left as it is); an object a path
    emptied goes too, so `{"log": {"text": m}}` less `log.text` leaves nothing."""
    others = dict(event)
    for path in paths:
        if path in event:  # a key holding the dots itself, which field_at read
            others.pop(path, None)
        else:
            _pop_nested(others, path.split("."))
    return others


def _pop_nested(container: dict, parts: list[str]) -> None:
    head, *rest = parts
    if not rest:
        container.pop(head, None)
        return
    # Only kept events lose fields, and they hold every path the shape reads.
    child = container.get(head)
    if isinstance(child, dict):
        child = dict(child)
        _pop_nested(child, rest)
        if child:
            container[head] = child
        else:
            del container[head]


def _too_long(name: str, length: int, limit: int) -> str:
    return f"{name} has {length} characters, the limit is {limit}"


def _shape_of(shape: EventShape | None, error_states: Iterable[str]) -> EventShape:
    """The shape to read by: `shape`, or Qovery's batched one with `error_states`."""
    if shape is None:
        return EventShape(error_states=tuple(error_states))
    if error_states is not DEFAULT_ERROR_STATES and tuple(error_states) != shape.error_states:
        raise ValueError("error_states given beside a shape: give them as the shape's error_states")
    return shape


def flatten_batches(
    dump: pd.DataFrame,
    error_states: Iterable[str] = DEFAULT_ERROR_STATES,
    max_message_chars: int = DEFAULT_MAX_MESSAGE_CHARS,
    shape: EventShape | None = None,
) -> FlattenedEvents:
    """Read each row's events by `shape` and keep the error events.

    `dump` has the columns `id`, `created_at` and `payload` (text or UTF-8 bytes). Without a shape
    a payload is a JSON array of Qovery events (`scope`, `state`, `message`) and `error_states` are
    the errors. With layout "event" a payload is one JSON object, event_index 0; a row that is an
    array or a scalar is quarantined whole (`payload_not_an_object`).

    Each kept event carries its row id, its position in the batch, the row's `created_at`, `scope`
    ("" when the shape has none), `state` ("" likewise), the `message`, and every field the shape
    did not read as a JSON object in `extra` (a nested path's object less that field, dropped when
    nothing else is in it); message, scope, extra, and a state not matched against `error_states`
    are redacted. The message must be a string. A state or scope that is a number or a boolean is
    read as its JSON text (`500`, `true`), so `error_states` match a numeric status by its digits;
    null or absent, it is quarantined (`event_missing_field`), as is an array or object
    (`event_field_not_text`), with the configured path named.
    """
    shape = _shape_of(shape, error_states)
    wanted_states = None if shape.error_states is None else frozenset(shape.error_states)
    one_event_per_row = shape.layout == ONE_EVENT_PER_ROW
    message_path, state_path, scope_path = shape.message_field, shape.state_field, shape.scope_field
    # Paths that are plain keys (Qovery's) are read with dict.get, in the loop, at C speed.
    read_by_key = all("." not in path for path in shape.fields)
    read_keys = frozenset(shape.fields)
    events: list[tuple] = []
    quarantine = _Quarantine()
    non_error_states: Counter[str] = Counter()
    n_events_read = 0

    for row_id, created_at, payload in dump[["id", "created_at", "payload"]].itertuples(index=False):
        quarantine.next_row()
        text, reason, detail = _decode_payload(payload)
        if text is None:
            # Decoded as far as it goes, not cut at a byte count: a cut token would escape the rules.
            raw = payload[:_EXCERPT_WINDOW] if isinstance(payload, bytes) else b""
            excerpt = _excerpt_of_text(raw.decode("utf-8", "backslashreplace"), escaped=True)
            quarantine.add(row_id, None, reason, detail, lambda excerpt=excerpt: excerpt)
            continue
        try:
            batch = json.loads(text)
        except (ValueError, RecursionError) as error:
            # ValueError beyond JSONDecodeError: a number of more digits than Python reads (4,300).
            if isinstance(error, json.JSONDecodeError):
                detail = f"{error.msg} at line {error.lineno} column {error.colno}"
            elif isinstance(error, RecursionError):
                detail = "arrays or objects nested too deeply"
            else:
                detail = "a number with more digits than can be read"
            quarantine.add(
                row_id, None, "payload_not_json", detail, lambda t=text: _excerpt_of_text(t, escaped=True)
            )
            continue
        if one_event_per_row:
            if batch.__class__ is not dict:
                detail = f"payload is a JSON {type(batch).__name__}, expected an object (one event per row)"
                quarantine.add(
                    row_id, None, "payload_not_an_object", detail, lambda b=batch: _excerpt_of_value(b)
                )
                continue
            batch = [batch]
            n_events_read += 1
        else:
            if not isinstance(batch, list):
                detail = f"payload is a JSON {type(batch).__name__}, expected an array"
                quarantine.add(
                    row_id, None, "payload_not_a_list", detail, lambda b=batch: _excerpt_of_value(b)
                )
                continue
            n_events_read += len(batch)
            not_objects = [index for index, event in enumerate(batch) if event.__class__ is not dict]
            if not_objects:
                quarantine.add_not_objects(row_id, batch, not_objects)
                if len(not_objects) == len(batch):
                    continue
        for event_index, event in enumerate(batch):
            if event.__class__ is not dict:
                continue
            if read_by_key:
                message = event.get(message_path)
                state = event.get(state_path) if state_path else ""
                scope = event.get(scope_path) if scope_path else ""
            else:
                message, state = _at(event, message_path), _at(event, state_path)
                scope = _at(event, scope_path)
            if not (isinstance(scope, str) and isinstance(state, str) and isinstance(message, str)):
                scope, state, reason, detail = _fields_as_text(shape, scope, state, message)
                if reason:
                    quarantine.add(row_id, event_index, reason, detail, lambda e=event: _excerpt_of_value(e))
                    continue
            if len(state) > MAX_STATE_CHARS:
                detail = _too_long("state", len(state), MAX_STATE_CHARS)
                quarantine.add(
                    row_id, event_index, "state_too_long", detail, lambda s=state: _excerpt_of_text(s)
                )
                continue
            if wanted_states is not None and state not in wanted_states:
                named = redact_secrets(state)
                if named not in non_error_states and len(non_error_states) >= MAX_COUNTED_STATES:
                    named = OTHER_STATES
                non_error_states[named] += 1
                continue
            if len(scope) > MAX_SCOPE_CHARS:
                detail = _too_long("scope", len(scope), MAX_SCOPE_CHARS)
                quarantine.add(
                    row_id, event_index, "scope_too_long", detail, lambda s=scope: _excerpt_of_text(s)
                )
                continue
            if len(message) > max_message_chars:
                detail = _too_long("message", len(message), max_message_chars)
                quarantine.add(
                    row_id, event_index, "message_too_long", detail, lambda m=message: _excerpt_of_text(m)
                )
                continue
            if read_by_key:
                others = {key: value for key, value in event.items() if key not in read_keys}
            else:
                others = _without_fields(event, shape.fields)
            if len(text) > _WITHIN_BOUNDS:
                # Measured as they are (at C speed), so an oversized one is not redacted to be refused.
                try:
                    n_other_chars = len(_EXTRA_ENCODER.encode(others))
                except RecursionError:
                    n_other_chars = 0  # quarantined below: it cannot be redacted either
                if n_other_chars > MAX_EXTRA_CHARS:
                    detail = _too_long("the other fields as JSON", n_other_chars, MAX_EXTRA_CHARS)
                    quarantine.add(
                        row_id, event_index, "extra_too_long", detail, lambda o=others: _excerpt_of_value(o)
                    )
                    continue
                n_chars = len(scope) + len(state) + len(message) + n_other_chars
                if n_chars > MAX_EVENT_CHARS:
                    detail = _too_long("the event", n_chars, MAX_EVENT_CHARS)
                    quarantine.add(
                        row_id, event_index, "event_too_long", detail, lambda e=event: _excerpt_of_value(e)
                    )
                    continue
            extra = _redacted_json(others)
            if extra is None:
                detail = "its other fields nest too deeply"
                quarantine.add(row_id, event_index, "event_too_deeply_nested", detail, lambda: "")
                continue
            events.append(
                (
                    row_id,
                    event_index,
                    created_at,
                    redact_secrets(scope),
                    # A state matched against error_states is one of them; any other may be free text.
                    state if wanted_states is not None else redact_secrets(state),
                    redact_secrets(message),
                    extra,
                )
            )

    return FlattenedEvents(
        events=pd.DataFrame(events, columns=EVENT_COLUMNS),
        quarantine=quarantine.frame(),
        n_rows=len(dump),
        n_events_read=n_events_read,
        n_non_error_events=sum(non_error_states.values()),
        non_error_states=dict(non_error_states),
        quarantined=dict(quarantine.counts),
        n_rows_quarantined=quarantine.n_rows,
    )


def flatten_part(
    dump: pd.DataFrame,
    error_states: Iterable[str] = DEFAULT_ERROR_STATES,
    max_message_chars: int = DEFAULT_MAX_MESSAGE_CHARS,
    shape: EventShape | None = None,
) -> tuple[pd.DataFrame, FlattenedEvents]:
    """`flatten_batches` on one part of a dump: its events, and the rest with no events in it.

    The events are written beside the part; the rest (the quarantine's sample and the counts) is
    small, and the parts' rests add up with `add_flattened_parts`.
    """
    flattened = flatten_batches(dump, error_states, max_message_chars, shape)
    # A new empty frame, not a slice of the events, which would keep all of them alive.
    return flattened.events, dataclasses.replace(flattened, events=pd.DataFrame(columns=EVENT_COLUMNS))


def add_flattened_parts(parts: Sequence[FlattenedEvents]) -> FlattenedEvents:
    """The quarantine and counts of a whole dump from those of its parts, in order (no events): the
    counts added, the first QUARANTINE_SAMPLE_PER_REASON records of each reason kept."""
    non_error_states: Counter[str] = Counter()
    quarantined: Counter[str] = Counter()
    for part in parts:
        non_error_states.update(part.non_error_states)
        quarantined.update(part.quarantined)
    if len(non_error_states) > MAX_COUNTED_STATES:
        kept = dict(non_error_states.most_common(MAX_COUNTED_STATES - 1))
        kept[OTHER_STATES] = kept.get(OTHER_STATES, 0) + sum(non_error_states.values()) - sum(kept.values())
        non_error_states = Counter(kept)
    samples = [part.quarantine for part in parts if len(part.quarantine)]
    sample = pd.concat(samples, ignore_index=True) if samples else _empty_quarantine()
    sample = sample[sample.groupby("reason").cumcount() < QUARANTINE_SAMPLE_PER_REASON].reset_index(drop=True)
    return FlattenedEvents(
        events=pd.DataFrame(columns=EVENT_COLUMNS),
        quarantine=sample,
        n_rows=sum(part.n_rows for part in parts),
        n_events_read=sum(part.n_events_read for part in parts),
        n_non_error_events=sum(part.n_non_error_events for part in parts),
        non_error_states=dict(non_error_states),
        quarantined=dict(quarantined),
        n_rows_quarantined=sum(part.n_rows_quarantined for part in parts),
    )
