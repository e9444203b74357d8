"""Fuzzed input never raises, and every record is processed or quarantined with its reason.

Property-based (hypothesis, derandomized so CI sees the same examples every run). The invariants:

- flatten_batches: n_rows == rows whose payload is a JSON array + rows quarantined whole (event_index
  empty); n_events_read == the events in those arrays == kept + non-error + events quarantined (the
  exact counts, which the sample matches while it holds them all); no record is both kept and
  quarantined; `extra` is valid JSON. The same with one JSON object per row at nested paths: rows
  holding an object == events read, every other row quarantined whole.
- build_corpus: one corpus row per event, in order; variants and hints count every event once; a
  variant's example is its first event's message; cleaned text is ASCII; `has_text` iff it is
  non-empty; every variant has a template.
- build_cluster_report / report_markdown: every event in exactly one group; one table row per line.
- screen_task_runs: len(runs) == valid + rejected, each rejection with a known reason, each valid
  run plausible (start not after now, finished runs with a positive finite duration).
- SqlWorkflowService: running rows == running tasks + rejected; for the baselines' window, every
  row that belongs to it (by its readable end, else its readable start; rows with no readable
  time belong to every window) is used, rejected with a reason, or a valid failed/aborted/running
  run, and never two of these; and nothing else is used or rejected.
"""

import json
import math
import re
from collections import Counter
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from faultline.cleaning import Corpus, build_corpus
from faultline.durations import screen_task_runs
from faultline.event_shape import EventShape
from faultline.flatten import DEFAULT_ERROR_STATES, QUARANTINE_COLUMNS, flatten_batches
from faultline.report import build_cluster_report, report_markdown, report_rows
from resources.workflow import SqlWorkflowService

settings.register_profile(
    "faultline-fuzz",
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large,
    ],
)  # fmt: skip
FUZZ = settings.get_profile("faultline-fuzz")

MAX_MESSAGE_CHARS = 60  # small, so that "too long" is reached without megabytes of data
DAY = pd.Timestamp("2026-11-20T10:00:00Z")

# Text with everything: control characters, NUL, lone surrogates, any plane.
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=80)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=12,
)
states = st.sampled_from([*DEFAULT_ERROR_STATES, "DEPLOYED", "BUILDING"]) | json_values
events = st.one_of(
    st.fixed_dictionaries(
        {
            "scope": st.sampled_from(["APPLICATION", "ENVIRONMENT"]) | json_values,
            "state": states,
            "message": any_text
            | st.text(min_size=MAX_MESSAGE_CHARS, max_size=3 * MAX_MESSAGE_CHARS)
            | json_values,
        },
        optional={"execution_id": json_values, "extra": json_values, "password": json_values},
    ),  # fmt: skip
    st.dictionaries(st.sampled_from(["scope", "state", "message", "x"]), json_values, max_size=4),
    json_values,
)
payloads = st.one_of(
    st.lists(events, max_size=6).map(json.dumps),
    json_values.map(json.dumps),
    any_text.map(lambda text: text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")),
    st.binary(max_size=60),
    st.lists(events, max_size=3).map(lambda batch: json.dumps(batch).encode()),
    st.none(),
    st.just(float("nan")),
    st.integers(),
    st.just("[" * 5000),
)


def dump_of(payload_list: list) -> pd.DataFrame:
    n = len(payload_list)
    return pd.DataFrame({"id": range(1, n + 1), "created_at": [DAY] * n, "payload": payload_list})


def as_json(payload: object) -> object:
    """The test's own reading of a payload: the JSON value it holds, or None."""
    if isinstance(payload, bytes):
        try:
            payload = payload.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if not isinstance(payload, str):
        return None
    try:
        return json.loads(payload)
    except (ValueError, RecursionError):
        return None


def as_json_array(payload: object) -> list | None:
    value = as_json(payload)
    return value if isinstance(value, list) else None


@settings(FUZZ, max_examples=150)
@given(st.lists(payloads, max_size=8))
@example(['[{"scope": "A", "state": "BUILD_ERROR", "message": "m", "x": ' + "[" * 800 + "]" * 800 + "}]"])
@example([json.dumps([{"scope": "A", "state": "BUILD_ERROR", "message": "m", "note": 'password="a b"'}])])
def test_every_fuzzed_row_and_event_is_kept_counted_or_quarantined(payload_list):
    dump = dump_of(payload_list)
    flattened = flatten_batches(dump, max_message_chars=MAX_MESSAGE_CHARS)
    quarantine, kept = flattened.quarantine, flattened.events

    arrays = [as_json_array(payload) for payload in payload_list]
    whole_rows = quarantine[quarantine["event_index"].isna()]
    single_events = quarantine[quarantine["event_index"].notna()]
    n_single_events = flattened.n_quarantined - flattened.n_rows_quarantined
    assert flattened.n_rows == len(dump) == sum(a is not None for a in arrays) + flattened.n_rows_quarantined
    assert flattened.n_events_read == sum(len(a) for a in arrays if a is not None)
    assert flattened.n_events_read == len(kept) + flattened.n_non_error_events + n_single_events
    assert sum(flattened.non_error_states.values()) == flattened.n_non_error_events
    # Fewer records than the sample keeps of a reason: the sample is all of them, counted by reason.
    assert quarantine["reason"].value_counts().to_dict() == flattened.quarantined
    assert len(whole_rows) == flattened.n_rows_quarantined

    records = list(zip(kept["row_id"], kept["event_index"], strict=True))
    records += list(zip(single_events["row_id"], single_events["event_index"].astype(int), strict=True))
    assert len(records) == len(set(records))
    unread = {row_id for row_id, array in zip(dump["id"], arrays, strict=True) if array is None}
    assert set(whole_rows["row_id"]) == unread
    assert list(quarantine.columns) == QUARANTINE_COLUMNS
    assert quarantine["reason"].str.len().gt(0).all() and quarantine["excerpt"].str.len().le(200).all()
    assert kept["state"].isin(DEFAULT_ERROR_STATES).all()
    assert kept["message"].str.len().le(MAX_MESSAGE_CHARS).all()
    for extra in kept["extra"]:
        assert isinstance(json.loads(extra), dict)


messages = st.one_of(
    any_text,
    st.text(st.sampled_from(list(" \n\r\t|\\-_./:@'\"`<>*#0123456789aéZ🚀\x00\u2028")), max_size=200),
    st.just("\n" + "-" * 79 + "\n MESSAGE FOR THE USER\n Error message: x\n Hint: y\n"),
)


def corpus_of(message_list: list[str]) -> Corpus:
    events = pd.DataFrame(
        {"row_id": range(len(message_list)), "event_index": 0, "created_at": DAY, "scope": "APP",
         "state": "BUILD_ERROR", "message": message_list, "extra": "{}"}
    )  # fmt: skip
    return build_corpus(events)


@settings(FUZZ, max_examples=60)
@given(st.lists(messages, max_size=12))
def test_cleaning_fuzzed_messages_keeps_every_event_and_never_raises(message_list):
    corpus = corpus_of(message_list)
    assert corpus.events["row_id"].tolist() == list(range(len(message_list)))
    variants = corpus.variants
    assert variants["n_events"].sum() == len(message_list) == corpus.hints["n_events"].sum()
    # Each variant's example is the message of its first event, as it was.
    first_event = corpus.events.drop_duplicates("variant").set_index("variant")["row_id"]
    assert [message_list[first_event[variant]] for variant in variants.index] == variants["message"].tolist()
    assert variants["cleaned"].map(str.isascii).all()
    assert (variants["has_text"] == variants["cleaned"].str.len().gt(0)).all()
    # Every event has its template, even one of nothing but variables (`<*>`), which has no text.
    assert variants["template"].map(lambda template: isinstance(template, str)).all()


@settings(FUZZ, max_examples=40)
@given(st.lists(st.tuples(messages, st.sampled_from([-2, -1, 0, 1, 2])), min_size=1, max_size=12))
@example([("a\\|b", 0), ("x\r\ny\u2028z", -1), ("nul\x00 bell\x07", 1), ("| a | b |", -2)])
def test_a_report_of_fuzzed_messages_counts_every_event_once_and_keeps_its_table_whole(rows):
    corpus = corpus_of([message for message, _ in rows])
    clusters = corpus.events.assign(cluster_id=[cluster for _, cluster in rows])
    report = build_cluster_report(report_rows(corpus, clusters))
    assert report.groups["n_events"].sum() == report.n_events == len(rows)
    json.dumps(report.groups.to_dict(orient="records"))
    markdown = report_markdown(report, title="fuzz")
    table = [line for line in markdown.split("\n") if line.startswith("|")]
    assert len(table) == len(report.groups) + 2
    unescaped_pipes = re.compile(r"(?<!\\)(?:\\\\)*\|")
    assert all(len(unescaped_pipes.findall(line)) == 8 for line in table), markdown


# Task runs -----------------------------------------------------------------------------------

NOW = pd.Timestamp("2026-11-20T12:00:00Z")
KNOWN_REASONS = {
    "missing run_id", "missing task_type", "NUL character in run_id", "NUL character in task_type",
    "missing status", "missing started_at", "unparseable started_at", "unparseable ended_at",
    "started in the future", "running run with ended_at set", "finished run without ended_at",
    "ended_at before started_at", "zero duration",
}  # fmt: skip
times = st.one_of(
    st.none(),
    st.just(pd.NaT),
    st.just(float("nan")),
    st.sampled_from([float("inf"), -float("inf"), 0, 1.7e9, "", "yesterday-ish", "2026-13-45", "now"]),
    st.datetimes(min_value=datetime(1, 1, 1), timezones=st.none() | st.just(UTC)),
    st.datetimes(min_value=datetime(2026, 11, 19), max_value=datetime(2026, 11, 21)).map(pd.Timestamp),
    st.datetimes(min_value=datetime(2026, 11, 19), max_value=datetime(2026, 11, 21)).map(datetime.isoformat),
)
labels = st.none() | st.just(float("nan")) | st.integers(0, 3) | st.sampled_from(["a", "x\x00y", ""])
labels |= any_text
run_rows = st.fixed_dictionaries(
    {"run_id": labels, "task_type": labels, "started_at": times, "ended_at": times,
     "status": st.sampled_from(["running", "success", "failed", "aborted", "zombie", None, float("nan"), 3])}
)  # fmt: skip


@settings(FUZZ, max_examples=150)
@given(st.lists(run_rows, max_size=10))
def test_every_fuzzed_task_run_is_valid_or_rejected_with_a_reason(rows):
    runs = pd.DataFrame(rows, columns=["run_id", "task_type", "started_at", "ended_at", "status"])
    valid, rejected = screen_task_runs(runs, NOW)
    assert len(valid) + len(rejected) == len(runs)
    reasons = rejected["reason"]
    assert all(reason in KNOWN_REASONS or reason.startswith("unknown status") for reason in reasons)
    assert valid["status"].isin(["running", "success", "failed", "aborted"]).all()
    assert valid["run_id"].notna().all() and valid["task_type"].notna().all()
    assert (valid["started_at"] <= NOW.tz_localize(None)).all()
    finished = valid[valid["status"] != "running"]
    assert np.isfinite(finished["duration_s"]).all() and (finished["duration_s"] > 0).all()
    assert valid.loc[valid["status"] == "running", "ended_at"].isna().all()


# The workflow service reading rows the database holds -----------------------------------------

START, END = datetime(2026, 11, 6, tzinfo=UTC), datetime(2026, 11, 20, tzinfo=UTC)
_IN_WINDOW = st.datetimes(min_value=datetime(2026, 11, 6), max_value=datetime(2026, 11, 19, 23))
# (value as SQLite holds it, what it is for the window): in it, readable outside it, unreadable, NULL.
sqlite_times = st.one_of(
    _IN_WINDOW.map(lambda d: (d.isoformat(sep=" "), "in")),
    st.sampled_from([("1999-01-01 00:00:00", "out"), ("2200-01-01 00:00:00", "out")]),
    # Past the span both screenings read (pandas' timestamps end in 2262): unreadable, as in pandas.
    st.just(("9999-12-31 23:59:59", "bad")),
    st.sampled_from(
        [
            ("yesterday-ish", "bad"),
            ("", "bad"),
            ("2026-13-45 99:99", "bad"),
            ("now", "bad"),
            (2461000.5, "bad"),
            (float("inf"), "bad"),
            (b"\x00\xff", "bad"),
        ]
    ),  # fmt: skip
    st.just((None, "null")),
)
# No column types: SQLite keeps whatever it is given, as in a table another tool wrote.
UNTYPED_TABLE = "CREATE TABLE task_runs (run_id, task_type, started_at, ended_at, status)"
statuses = st.sampled_from(["success", "success", "running", "failed", "aborted", "zombie", None, ""])
sqlite_labels = st.sampled_from(["etl", "etl.b", "x\x00y", "'; DROP TABLE task_runs; --", "", None, 7])


def belongs_to_window(started: str, ended: str) -> bool:
    unreadable = {"bad", "null"}
    return ended == "in" or (ended in unreadable and started in {"in", *unreadable})


def check_window_accounting(service: SqlWorkflowService, rows: list[dict]) -> None:
    """Every row of the window is used, rejected or a valid non-success run, once; nothing else is."""
    used = service.successful_runs(START, END)
    rejected = service.rejected_runs(START, END)
    moments = service.duration_moments(START, END)
    assert moments["n_runs"].sum() == len(used)
    durations = used["duration_s"].astype(float)
    assert np.isfinite(durations).all() and (durations > 0).all()
    in_window = {
        row["run_id"]: row for row in rows if belongs_to_window(row["started_kind"], row["ended_kind"])
    }
    used_ids, rejected_ids = Counter(used["run_id"]), Counter(rejected["run_id"])
    assert max(used_ids.values(), default=1) == 1 and max(rejected_ids.values(), default=1) == 1
    assert not used_ids.keys() & rejected_ids.keys()
    assert used_ids.keys() | rejected_ids.keys() <= in_window.keys()
    for run_id, row in in_window.items():
        if run_id not in used_ids and run_id not in rejected_ids:
            assert row["status"] in ("failed", "aborted", "running"), row


def running_accounting(service: SqlWorkflowService, rows: list[dict]) -> None:
    running, rejected = service.running_tasks(NOW.to_pydatetime())
    assert len(running) + len(rejected) == sum(row["status"] == "running" for row in rows)
    assert running["started_at"].notna().all()


@settings(FUZZ, max_examples=40)
@given(st.lists(st.tuples(sqlite_labels, sqlite_times, sqlite_times, statuses), max_size=12))
def test_fuzzed_rows_in_an_untyped_sqlite_table_are_all_accounted_for(tmp_path_factory, rows):
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'runs.db'}"
    records = [
        {"run_id": f"r{n}", "task_type": task_type, "started_at": started[0], "ended_at": ended[0],
         "status": status, "started_kind": started[1], "ended_kind": ended[1]}
        for n, (task_type, started, ended, status) in enumerate(rows)
    ]  # fmt: skip
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text(UNTYPED_TABLE))
        if records:
            values = "(:run_id, :task_type, :started_at, :ended_at, :status)"
            connection.execute(sa.text(f"INSERT INTO task_runs VALUES {values}"), records)
    engine.dispose()
    service = SqlWorkflowService(url=url)
    check_window_accounting(service, records)
    running_accounting(service, records)


# PostgreSQL holds typed timestamps, but also infinity and years the driver cannot hand to Python.
PG_TIMES = [
    ("2026-11-10 08:00:00+00", "in"), ("2026-11-12 09:30:00+00", "in"), ("2026-11-12 09:30:00+00", "in"),
    ("1999-01-01 00:00:00+00", "out"), ("2200-01-01 00:00:00+00", "out"), ("9999-12-31 23:00:00+00", "bad"),
    ("infinity", "bad"),
    ("-infinity", "bad"), ("20000-01-01 00:00:00+00", "bad"), ("0044-03-15 00:00:00+00 BC", "bad"),
    (None, "null"),
]  # fmt: skip


@pytest.fixture
def postgres_runs_url(postgres_url: str) -> str:
    engine = sa.create_engine(postgres_url)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "CREATE TABLE task_runs (run_id text, task_type text, started_at timestamptz, "
                "ended_at timestamptz, status text)"
            )
        )
    engine.dispose()
    return postgres_url


@settings(FUZZ, max_examples=25)
@given(
    st.lists(
        st.tuples(st.sampled_from(["etl", "'; DROP TABLE task_runs; --", None]), st.sampled_from(PG_TIMES),
                  st.sampled_from(PG_TIMES), statuses),
        max_size=10,
    )
)  # fmt: skip
def test_fuzzed_rows_with_infinite_and_far_dates_in_postgresql_are_all_accounted_for(postgres_runs_url, rows):
    records = [
        {"run_id": f"r{n}", "task_type": task_type, "started_at": started[0], "ended_at": ended[0],
         "status": status, "started_kind": started[1], "ended_kind": ended[1]}
        for n, (task_type, started, ended, status) in enumerate(rows)
    ]  # fmt: skip
    engine = sa.create_engine(postgres_runs_url)
    with engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM task_runs"))
        if records:
            connection.execute(
                sa.text(
                    "INSERT INTO task_runs VALUES (:run_id, :task_type, CAST(:started_at AS timestamptz), "
                    "CAST(:ended_at AS timestamptz), :status)"
                ),
                records,
            )
    engine.dispose()
    service = SqlWorkflowService(url=postgres_runs_url)
    check_window_accounting(service, records)
    running_accounting(service, records)


def test_a_run_read_twice_is_alerted_once(tmp_path):
    """Duplicate run ids in a table without a key: both rows screened, one alert."""
    from resources.alert_store import AlertStore

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    engine = sa.create_engine(url)
    started = (NOW - pd.Timedelta(hours=3)).strftime("%Y-%m-%d %H:%M:%S")
    with engine.begin() as connection:
        connection.execute(sa.text(UNTYPED_TABLE))
        insert = sa.text("INSERT INTO task_runs VALUES ('dup', 'etl', :s, NULL, 'running')")
        connection.execute(insert, [{"s": started}, {"s": started}])
    engine.dispose()
    running, rejected = SqlWorkflowService(url=url).running_tasks(NOW.to_pydatetime())
    assert len(running) == 2 and rejected.empty
    overdue = running.assign(elapsed_s=10_800.0, upper_limit_s=600.0, mean_s=300.0, n_runs=10)
    store = AlertStore(url=url)
    assert len(store.record_alerts(overdue, raised_at=NOW.to_pydatetime())) == 1
    assert len(store.record_alerts(overdue, raised_at=NOW.to_pydatetime())) == 0
    assert store.alerts()["run_id"].tolist() == ["dup"]
    assert not math.isnan(store.alerts()["elapsed_s"].iloc[0])


# One event per row, at nested paths: `{"level": ..., "log": {"text": ...}}`.
EVENT_PER_ROW = EventShape(
    layout="event", message_field="log.text", state_field="level", scope_field=None, error_states=("ERROR",)
)
log_lines = st.one_of(
    st.fixed_dictionaries(
        {
            "level": st.sampled_from(["ERROR", "INFO"]) | json_values,
            "log": st.fixed_dictionaries(
                {"text": any_text | st.text(min_size=MAX_MESSAGE_CHARS, max_size=2 * MAX_MESSAGE_CHARS)},
                optional={"file": json_values, "password": json_values},
            ) | json_values,
        },
        optional={"ts": json_values, "log.text": json_values, "token": json_values},
    ),
    st.dictionaries(st.sampled_from(["level", "log", "x"]), json_values, max_size=3),
)  # fmt: skip
log_payloads = st.one_of(
    log_lines.map(json.dumps),
    st.lists(log_lines, max_size=2).map(json.dumps),
    json_values.map(json.dumps),
    any_text.map(lambda text: text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")),
    st.binary(max_size=40),
    st.none(),
)


@settings(FUZZ, max_examples=60)
@given(st.lists(log_payloads, max_size=8))
def test_every_fuzzed_row_of_one_event_each_is_kept_counted_or_quarantined(payload_list):
    dump = dump_of(payload_list)
    flattened = flatten_batches(dump, max_message_chars=MAX_MESSAGE_CHARS, shape=EVENT_PER_ROW)
    quarantine, kept = flattened.quarantine, flattened.events

    objects = {
        row_id for row_id, p in zip(dump["id"], payload_list, strict=True) if isinstance(as_json(p), dict)
    }
    whole_rows = quarantine[quarantine["event_index"].isna()]
    assert flattened.n_rows == len(dump) == len(objects) + flattened.n_rows_quarantined
    assert set(whole_rows["row_id"]) == set(dump["id"]) - objects
    n_single_events = flattened.n_quarantined - flattened.n_rows_quarantined
    assert (
        flattened.n_events_read == len(objects) == len(kept) + flattened.n_non_error_events + n_single_events
    )
    assert quarantine["reason"].value_counts().to_dict() == flattened.quarantined
    single = quarantine.loc[quarantine["event_index"].notna(), "row_id"]
    assert set(kept["row_id"]) | set(single) <= objects and not set(kept["row_id"]) & set(single)
    assert (
        (kept["event_index"] == 0).all() and (kept["state"] == "ERROR").all() and (kept["scope"] == "").all()
    )
    assert kept["message"].str.len().le(MAX_MESSAGE_CHARS).all()
    assert quarantine["excerpt"].str.len().le(200).all()
    for extra in kept["extra"]:
        assert isinstance(json.loads(extra), dict) and "level" not in json.loads(extra)
