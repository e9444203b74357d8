"""The deployment-events store on SQLite and PostgreSQL: a day's rows, exactly, as stored."""

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from resources.event_store import DeploymentEventStore
from resources.outages import SourceConfigurationError
from resources.sql import SourceUnavailableError

DAY = datetime(2026, 11, 21, tzinfo=UTC)


def test_a_day_is_read_from_its_first_microsecond_to_the_next_midnight_excluded(store_url):
    store = DeploymentEventStore(url=store_url)
    store.create_table()
    moments = [
        DAY - timedelta(microseconds=1),
        DAY,
        DAY + timedelta(hours=23, minutes=59, seconds=59),
        DAY + timedelta(days=1),
    ]
    store.write_batches(
        {"id": n, "created_at": moment, "payload": f'[{{"n": {n}}}]'} for n, moment in enumerate(moments)
    )
    dump = store.read_batches(DAY, DAY + timedelta(days=1))
    assert dump["id"].tolist() == [1, 2]
    assert dump["created_at"].tolist() == [moments[1], moments[2]]
    payloads = [p.decode() if isinstance(p, bytes) else p for p in dump["payload"]]
    assert payloads == ['[{"n": 1}]', '[{"n": 2}]']


def test_an_unreachable_store_is_named_without_its_password():
    store = DeploymentEventStore(url="postgresql+psycopg2://faultline:S3cret@127.0.0.1:1/events")
    with pytest.raises(SourceUnavailableError) as raised:
        store.read_batches(DAY, DAY + timedelta(days=1))
    message = str(raised.value)
    assert message.startswith(
        "deployment-events store at postgresql+psycopg2://faultline:***@127.0.0.1:1/events"
    )
    assert "S3cret" not in message


def test_a_table_name_that_is_not_an_identifier_is_refused(store_url):
    with pytest.raises(ValueError, match="is not a plain SQL identifier"):
        DeploymentEventStore(url=store_url, table="deployment_events; DROP TABLE x").read_batches(DAY, DAY)


def test_sqlite_payload_bytes_that_are_not_utf8_reach_the_pipeline_as_bytes(tmp_path):
    store = DeploymentEventStore(url=f"sqlite:///{tmp_path / 'events.db'}")
    store.create_table()
    engine = sa.create_engine(store.url)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO deployment_events (id, created_at, payload) VALUES (1, :at, CAST(:raw AS TEXT))"
            ),
            {"at": "2026-11-21 10:00:00.000000", "raw": b'[{"message": "caf\xe9"}]'},
        )
    engine.dispose()
    assert store.read_batches(DAY, DAY + timedelta(days=1))["payload"].tolist() == [
        b'[{"message": "caf\xe9"}]'
    ]


def test_a_day_is_streamed_in_parts_of_at_most_the_rows_asked_for_in_id_order(store_url):
    store = DeploymentEventStore(url=store_url)
    store.create_table()
    store.write_batches(
        {"id": n, "created_at": DAY + timedelta(minutes=n), "payload": f"[{n}]"}
        for n in (5, 1, 4, 2, 3, 9, 7)
    )
    parts = list(store.iter_batches(DAY, DAY + timedelta(days=1), rows_per_part=3))
    assert [part["id"].tolist() for part in parts] == [[1, 2, 3], [4, 5, 7], [9]]
    assert list(store.iter_batches(DAY + timedelta(days=1), DAY + timedelta(days=2), rows_per_part=3)) == []
    with pytest.raises(ValueError, match="rows_per_part must be at least 1"):
        next(store.iter_batches(DAY, DAY, rows_per_part=0))


def _table_of_events(url: str, ddl: str, rows: list[dict], insert: str) -> None:
    """A table made and filled with plain SQL; `at` bound as SQLAlchemy binds a time (on SQLite, its
    text format, which the store compares as text)."""
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text(ddl))
        if rows:
            at = sa.bindparam("at", type_=sa.DateTime(timezone=True))
            connection.execute(sa.text(insert).bindparams(at), rows)
    engine.dispose()


def test_a_table_of_one_event_per_row_gives_each_row_as_one_json_object(store_url):
    _table_of_events(
        store_url,
        "CREATE TABLE app_errors (event_no INTEGER PRIMARY KEY, occurred_at TIMESTAMP, "
        '"order" TEXT, message TEXT, attempt INTEGER)',
        [
            {"n": 4, "at": DAY + timedelta(hours=9, minutes=30), "o": "build", "m": "exit 1", "a": 2},
            {"n": 2, "at": DAY, "o": "deploy", "m": "caf\u00e9 \U0001f525", "a": None},
            {"n": 3, "at": DAY + timedelta(days=1), "o": "deploy", "m": "at end: next day", "a": 1},
            {"n": 1, "at": DAY - timedelta(microseconds=1), "o": "deploy", "m": "day before", "a": 1},
            {"n": 7, "at": DAY + timedelta(hours=23), "o": "stop", "m": "oom", "a": 1},
        ],
        'INSERT INTO app_errors VALUES (:n, :at, :o, :m, :a)',
    )
    store = DeploymentEventStore(
        url=store_url,
        table="app_errors",
        id_column="event_no",
        created_at_column="occurred_at",
        event_columns=["message", "order", "occurred_at", "attempt"],
    )
    parts = list(store.iter_batches(DAY, DAY + timedelta(days=1), rows_per_part=2))
    assert [part["id"].tolist() for part in parts] == [[2, 4], [7]]
    payloads = [json.loads(p) for part in parts for p in part["payload"]]
    assert payloads == [
        {"message": "caf\u00e9 \U0001f525", "order": "deploy", "occurred_at": "2026-11-21T00:00:00+00:00",
         "attempt": None},
        {"message": "exit 1", "order": "build", "occurred_at": "2026-11-21T09:30:00+00:00", "attempt": 2},
        {"message": "oom", "order": "stop", "occurred_at": "2026-11-21T23:00:00+00:00", "attempt": 1},
    ]
    assert parts[0]["created_at"].tolist() == [DAY, DAY + timedelta(hours=9, minutes=30)]


def test_configured_id_time_and_payload_columns_read_a_batch_table_as_the_default_one(store_url):
    _table_of_events(
        store_url,
        "CREATE TABLE engine_log (batch_no INTEGER PRIMARY KEY, logged TIMESTAMP, body TEXT)",
        [
            {"n": 10, "at": DAY + timedelta(hours=1), "b": '[{"message": "a"}]'},
            {"n": 11, "at": DAY + timedelta(days=1), "b": '[{"message": "next day"}]'},
        ],
        "INSERT INTO engine_log VALUES (:n, :at, :b)",
    )
    store = DeploymentEventStore(
        url=store_url,
        table="engine_log",
        id_column="batch_no",
        created_at_column="logged",
        payload_column="body",
    )
    dump = store.read_batches(DAY, DAY + timedelta(days=1))
    assert dump["id"].tolist() == [10]
    payloads = [p.decode() if isinstance(p, bytes) else p for p in dump["payload"]]
    assert payloads == ['[{"message": "a"}]']


def test_a_jsonb_payload_column_reaches_the_dump_as_text(postgres_url):
    _table_of_events(
        postgres_url,
        "CREATE TABLE deployment_events (id BIGINT PRIMARY KEY, created_at TIMESTAMPTZ, payload JSONB)",
        [{"n": 1, "at": DAY, "b": '[{"message": "x", "state": "BUILD_ERROR"}]'}],
        "INSERT INTO deployment_events VALUES (:n, :at, CAST(:b AS JSONB))",
    )
    dump = DeploymentEventStore(url=postgres_url).read_batches(DAY, DAY + timedelta(days=1))
    assert dump["payload"].tolist() == ['[{"state": "BUILD_ERROR", "message": "x"}]']


@pytest.mark.parametrize(
    ("settings", "setting", "column"),
    [
        ({"payload_column": "body"}, "payload_column", "body"),
        ({"created_at_column": "logged_at"}, "created_at_column", "logged_at"),
        ({"event_columns": ["payload", "severity"]}, "event_columns", "severity"),
        ({"id_column": "event_id", "event_columns": ["payload"]}, "id_column", "event_id"),
    ],
)
def test_a_column_the_table_lacks_fails_naming_the_setting(store_url, settings, setting, column):
    DeploymentEventStore(url=store_url).create_table()
    store = DeploymentEventStore(url=store_url, **settings)
    with pytest.raises(SourceConfigurationError) as raised:
        store.read_batches(DAY, DAY + timedelta(days=1))
    assert f"table 'deployment_events' has no column {column!r}; set `{setting}`" in str(raised.value)


def test_column_names_that_are_not_identifiers_are_refused_before_any_sql(store_url):
    with pytest.raises(ValueError, match=r"event_columns='message; DROP TABLE x' is not a plain SQL"):
        DeploymentEventStore(url=store_url, event_columns=["message; DROP TABLE x"]).read_batches(DAY, DAY)
    with pytest.raises(ValueError, match=r"id_column='a.b' is not a plain SQL identifier"):
        DeploymentEventStore(url=store_url, id_column="a.b").read_batches(DAY, DAY)


def test_an_id_column_that_is_not_integers_is_a_configuration_error(store_url):
    _table_of_events(
        store_url,
        "CREATE TABLE errors (uid TEXT PRIMARY KEY, created_at TIMESTAMP, message TEXT)",
        [{"u": "6f1c-a", "at": DAY, "m": "boom"}],
        "INSERT INTO errors VALUES (:u, :at, :m)",
    )
    store = DeploymentEventStore(url=store_url, table="errors", id_column="uid", event_columns=["message"])
    with pytest.raises(SourceConfigurationError, match=r"column 'uid' of 'errors' holds '6f1c-a', not an "
                       r"integer.*set `id_column`"):
        store.read_batches(DAY, DAY + timedelta(days=1))


def test_sqlite_event_column_bytes_that_are_not_utf8_make_a_payload_the_pipeline_quarantines(tmp_path):
    url = f"sqlite:///{tmp_path / 'events.db'}"
    _table_of_events(
        url,
        "CREATE TABLE errors (id INTEGER PRIMARY KEY, created_at TIMESTAMP, message TEXT, code INTEGER)",
        [
            {"n": 1, "at": DAY + timedelta(hours=10), "m": b"caf\xe9", "c": 5},
            {"n": 2, "at": DAY + timedelta(hours=11), "m": b"fine", "c": 6},
        ],
        "INSERT INTO errors VALUES (:n, :at, CAST(:m AS TEXT), :c)",
    )
    store = DeploymentEventStore(url=url, table="errors", event_columns=["message", "code"])
    assert store.read_batches(DAY, DAY + timedelta(days=1))["payload"].tolist() == [
        b'{"message": "caf\xe9", "code": 5}',
        '{"message": "fine", "code": 6}',
    ]
