"""SQL resources keep their connections: one engine per database, a schema made once, a tick's
deliveries written in one statement over one HTTP connection."""

import http.server
import json
import threading
import traceback
from datetime import UTC, datetime

import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from resources.alert_sinks import AlertSinks, deliver_pending_alerts
from resources.alert_store import AlertStore
from resources.event_store import DeploymentEventStore
from resources.outages import SourceConfigurationError, SourceUnavailableError
from resources.sql import engine_for, is_outage, safe_url

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def overdue(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "task_type": ["etl.orders"] * n,
            "run_id": [f"run-{i}" for i in range(n)],
            "started_at": [pd.Timestamp(NOW) - pd.Timedelta(hours=2)] * n,
            "elapsed_s": 7200.0,
            "upper_limit_s": 3600.0,
            "mean_s": 1800.0,
            "n_runs": 40,
        }
    )


class StatementCounter:
    """Counts the DBAPI connections an engine opens and the statements it runs."""

    def __init__(self, engine: sa.Engine) -> None:
        self.connections = 0
        self.statements: list[str] = []
        sa.event.listen(engine, "connect", self._connected)
        sa.event.listen(engine, "before_cursor_execute", self._executed)
        self._engine = engine

    def _connected(self, *args) -> None:
        self.connections += 1

    def _executed(self, connection, cursor, statement, *args) -> None:
        self.statements.append(statement)

    def remove(self) -> None:
        sa.event.remove(self._engine, "connect", self._connected)
        sa.event.remove(self._engine, "before_cursor_execute", self._executed)


@pytest.fixture
def counted(store_url: str):
    counter = StatementCounter(engine_for(store_url))
    yield counter
    counter.remove()


def test_stores_on_one_url_share_one_engine_and_reuse_its_connection(store_url: str, counted):
    for _ in range(5):
        # A new resource object each time, as Dagster builds one for every tick.
        store = AlertStore(url=store_url)
        store.latest_baselines()
        store.alerts()
    assert AlertStore(url=store_url).engine() is engine_for(store_url)
    assert counted.connections == 1


def test_a_store_creates_its_tables_at_its_first_use_only(store_url: str, counted):
    store = AlertStore(url=store_url)
    store.alerts()
    made_schema = len(counted.statements)
    counted.statements.clear()
    for _ in range(3):
        store.alerts()
    # Each later call is the one SELECT of the alerts, nothing asking whether tables exist.
    assert made_schema > 1 and len(counted.statements) == 3
    assert all(statement.lstrip().upper().startswith("SELECT") for statement in counted.statements)
    assert all("alerts" in statement for statement in counted.statements)


class KeepAliveWebhook:
    """A webhook on loopback speaking HTTP/1.1, noting the client port of every request."""

    def __init__(self) -> None:
        self.ports: list[int] = []
        self.alert_ids: list[int] = []
        webhook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                webhook.ports.append(self.client_address[1])
                webhook.alert_ids.append(body["alert_id"])
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def test_a_rounds_deliveries_are_one_statement_over_one_connection(store_url: str, counted):
    store = AlertStore(url=store_url)
    new = store.record_alerts(overdue(50), raised_at=NOW)
    webhook = KeepAliveWebhook()
    try:
        counted.statements.clear()
        report = deliver_pending_alerts(store, AlertSinks(webhook_url=webhook.url), now=NOW)
    finally:
        webhook.close()
    assert report.delivered == {"webhook": 50} and report.failed == {}
    assert webhook.alert_ids == new["alert_id"].tolist()
    assert len(set(webhook.ports)) == 1  # one kept-alive connection, not one per alert
    inserts = [s for s in counted.statements if s.lstrip().upper().startswith("INSERT INTO ALERT_DELIVERIES")]
    assert len(inserts) == 1
    assert store.undelivered("webhook").empty


def test_a_round_that_fails_part_way_records_what_was_delivered(store_url: str, recording_server):
    store = AlertStore(url=store_url)
    store.record_alerts(overdue(5), raised_at=NOW)
    webhook = recording_server()
    sinks = AlertSinks(webhook_url=webhook.url)
    first = deliver_pending_alerts(store, sinks, now=NOW)
    assert first.delivered == {"webhook": 5}
    store.record_alerts(overdue(8), raised_at=NOW)  # three new runs: run-5 .. run-7
    webhook.failures = 1
    second = deliver_pending_alerts(store, sinks, now=NOW)
    assert second.delivered == {"webhook": 0} and "HTTP 500" in second.failed["webhook"][0]
    third = deliver_pending_alerts(store, sinks, now=NOW)
    assert third.delivered == {"webhook": 3}
    delivered = [entry["body"]["run_id"] for entry in webhook.received]
    assert delivered == [f"run-{i}" for i in range(8)]  # each once, in order


class _Orig(Exception):
    def __init__(self, text: str, pgcode: str | None = None, sqlite_errorname: str | None = None):
        super().__init__(text)
        if pgcode is not None:
            self.pgcode = pgcode
        if sqlite_errorname is not None:
            self.sqlite_errorname = sqlite_errorname


def failure(kind: type[sa.exc.DBAPIError], text: str, **codes: str) -> sa.exc.DBAPIError:
    return kind("SELECT 1", {}, _Orig(text, **codes))


Operational, Programming = sa.exc.OperationalError, sa.exc.ProgrammingError


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        (failure(Operational, "connection refused"), True),
        (failure(Operational, "server closed the connection unexpectedly"), True),
        (failure(Operational, "terminating connection", pgcode="57P01"), True),
        (failure(Operational, "too many clients", pgcode="53300"), True),
        (failure(Operational, "deadlock detected", pgcode="40P01"), True),
        (failure(Operational, "database is locked", sqlite_errorname="SQLITE_BUSY"), True),
        (failure(Operational, "disk I/O error", sqlite_errorname="SQLITE_IOERR_READ"), True),
        (failure(Programming, 'relation "x" does not exist', pgcode="42P01"), False),
        (failure(Programming, "permission denied for table x", pgcode="42501"), False),
        (failure(Operational, "no such table: x", sqlite_errorname="SQLITE_ERROR"), False),
        (failure(Operational, 'FATAL: password authentication failed for user "u"'), False),
        (failure(Operational, 'FATAL: database "faultline" does not exist'), False),
    ],
)
def test_only_a_passing_fault_counts_as_an_outage(error: sa.exc.DBAPIError, outage: bool):
    assert is_outage(error) is outage


@settings(max_examples=300, deadline=None)
@given(secret=st.text(min_size=1, max_size=40).filter(lambda text: "\x00" not in text))
def test_no_password_shows_in_a_shown_url_whatever_it_holds(secret: str):
    # Each piece a reserved character could split off starts with the marker too.
    password = "Pw9" + "".join(f"{c}Pw9" if c in "@:/?#&=%" else c for c in secret)
    for template in (
        "postgresql+psycopg2://faultline:{}@db.internal:5432/faultline",
        "postgresql://faultline:{}@db.internal/faultline?sslmode=require",
        "postgresql://db.internal/faultline?user=faultline&password={}",
    ):
        assert "Pw9" not in safe_url(template.format(password))


@pytest.mark.parametrize(
    "password", ["Pw9-p@Pw9", "Pw9:Pw9/Pw9", "Pw9@Pw9:1Pw9/Pw9?Pw9#Pw9", "Pw9 with %Pw9"]
)
def test_a_store_whose_url_holds_a_raw_reserved_character_fails_without_showing_it(password: str):
    store = DeploymentEventStore(url=f"postgresql+psycopg2://faultline:{password}@127.0.0.1:1/faultline")
    with pytest.raises((SourceConfigurationError, SourceUnavailableError)) as raised:
        store.read_batches(NOW, NOW)
    assert "Pw9" not in "".join(traceback.format_exception(raised.value))
