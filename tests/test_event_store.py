"""The deployment-events store on SQLite and PostgreSQL: a day's rows, exactly, as stored."""

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from resources.event_store import DeploymentEventStore
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
