"""Shared fixtures: generated stores in temporary folders, and the resources that read them."""

import http.server
import json
import os
import select
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from faultline.demo_data.deployment_events import generate_deployment_batches
from resources.event_store import DeploymentEventStore
from resources.report_store import ReportStore

DEMO_END = datetime(2026, 11, 22, tzinfo=UTC)
DEMO_DAY = "2026-11-21"
# The tests' clock, wherever the code under test is told the time (the sensor's `clock`, a partition
# key, demo data's `end`): a fixed instant, so a run that crosses UTC midnight sees one day throughout.
FIXED_NOW = datetime(2026, 11, 22, 6, tzinfo=UTC)
FIXED_TODAY = datetime(2026, 11, 22, tzinfo=UTC)


def fixed_clock() -> datetime:
    return FIXED_NOW


def until(condition: Callable[[], object], patience_s: float = 120) -> bool:
    """Whether `condition` comes true within `patience_s` (asked every hundredth of a second): a wait
    for something to have happened, never a measure of how fast it did."""
    deadline = time.monotonic() + patience_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def seeded_event_store(folder: Path, rows: list[dict]) -> DeploymentEventStore:
    store = DeploymentEventStore(url=f"sqlite:///{folder / 'events.db'}")
    store.create_table()
    store.write_batches(rows)
    return store


@pytest.fixture
def instance(tmp_path: Path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as test_instance:
        yield test_instance


@pytest.fixture
def report_store(tmp_path: Path) -> ReportStore:
    return ReportStore(directory=str(tmp_path / "reports"))


@pytest.fixture(scope="session")
def demo_rows() -> list[dict]:
    """The demo's full store: 14 days, 20,000 error events, as `make demo` seeds it."""
    return generate_deployment_batches(end=DEMO_END)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# A terminated test run (a CI timeout, say) unwinds like Ctrl-C: fixtures and `finally` blocks
# still stop the servers they started and drop the databases they created.
signal.signal(signal.SIGTERM, _interrupt)

POSTGRES_ADMIN_URL = os.environ.get(
    "FAULTLINE_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)


def _postgres_unavailable(error: Exception) -> None:
    reason = (
        f"needs PostgreSQL at {sa.engine.make_url(POSTGRES_ADMIN_URL).render_as_string(hide_password=True)}"
    )
    cause = str(getattr(error, "orig", error)).strip().splitlines()[0]
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true, so this is a failure, not a skip): {cause}")
    pytest.skip(f"{reason}: {cause}")


@pytest.fixture
def postgres_databases():
    """Creates fresh, empty PostgreSQL databases on demand (`create()` -> URL); drops them after."""
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    created: list[str] = []

    def create() -> str:
        name = f"faultline_test_{uuid.uuid4().hex[:12]}"
        try:
            with admin.connect() as connection:
                connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        except sa.exc.OperationalError as error:
            _postgres_unavailable(error)
        created.append(name)
        return sa.engine.make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)

    yield create
    # Nothing created means nothing to drop, and maybe no server to connect to: a skipped test
    # must not turn into an error at teardown.
    if created:
        with admin.connect() as connection:
            for name in created:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def postgres_url(postgres_databases) -> str:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    return postgres_databases()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path: Path) -> str:
    """The same test on the embedded default and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_url")


HANG_S = 60


class RecordingServer:
    """An HTTP server on loopback that records what it receives.

    It refuses the next `failures` requests (500; for Slack, ok false, or 500 with
    `slack_http_error`), and while `hang` is set it
    accepts requests and never answers them: a sink that times out. Hung requests are counted in
    `hung`, answered ones in `attempts`; only accepted ones are in `received`.
    """

    def __init__(
        self,
        failures: int = 0,
        failure_status: int = 500,
        slack: bool = False,
        slack_http_error: bool = False,
    ) -> None:
        self.failures, self.failure_status, self.slack = failures, failure_status, slack
        self.slack_http_error = slack_http_error
        self.hang = False
        self.received: list[dict] = []
        self.attempts = 0
        self.hung = 0
        self._released = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                if server.hang:
                    server.hung += 1
                    # The client should give up long before; one that waits this long sees the
                    # connection closed unanswered, and reports that instead of a timeout.
                    server._released.wait(HANG_S)
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.attempts += 1
                failing = server.failures > 0
                server.failures -= failing
                if not failing:
                    server.received.append({"path": self.path, "body": json.loads(body or b"{}")})
                if server.slack:  # Slack answers 200 with ok false when it refuses a message
                    status, reply = 200, {"ok": not failing, **({"error": "ratelimited"} if failing else {})}
                    if failing and server.slack_http_error:  # ... and 5xx when it is down itself
                        status, reply = server.failure_status, {"ok": False, "error": "internal_error"}
                else:
                    status, reply = (server.failure_status if failing else 200), {}
                payload = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._released.set()
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def recording_server():
    servers: list[RecordingServer] = []

    def start(**kwargs) -> RecordingServer:
        servers.append(RecordingServer(**kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


class PostgresProxy:
    """A TCP proxy on loopback in front of the test PostgreSQL, to take the database away for real.

    `stop()` closes its port and every connection through it (the server is unreachable); `start()`
    listens on the same port again. With `cut_after_bytes` set, each connection is cut once the server
    has sent it that many bytes: a read dropped mid-result. `cuts` keeps, for each connection cut, what
    the client had sent by then, so a test can tell which query was being answered. While `hang` is
    set, connections are accepted and never answered (closed after HANG_S, so a client without a
    timeout fails its test instead of hanging it).
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.cut_after_bytes: int | None = None
        self.hang = False
        self.cuts: list[bytes] = []
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.port = 0
        self.start()

    def url(self, database_url: str, password: str | None = None) -> str:
        """`database_url` through the proxy, with `password` in it (trust auth does not check it)."""
        url = sa.engine.make_url(database_url).set(host="127.0.0.1", port=self.port)
        return (url.set(password=password) if password else url).render_as_string(hide_password=False)

    def start(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
            listener.close()
        with self._lock:
            for connection in list(self._open):
                self._close(connection)

    def _close(self, connection: socket.socket) -> None:
        self._open.discard(connection)
        try:
            connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        connection.close()

    def _close_locked(self, connection: socket.socket) -> None:
        with self._lock:
            self._close(connection)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if self.hang:
                with self._lock:
                    self._open.add(client)
                threading.Timer(HANG_S, self._close_locked, args=(client,)).start()
                continue
            try:
                upstream = socket.create_connection(self.upstream)
            except OSError:  # PostgreSQL itself is down: the client sees its connection closed
                client.close()
                continue
            with self._lock:
                self._open |= {client, upstream}
            threading.Thread(target=self._relay, args=(client, upstream), daemon=True).start()

    def _relay(self, client: socket.socket, upstream: socket.socket) -> None:
        from_server, from_client = 0, bytearray()
        try:
            while True:
                readable, _, _ = select.select([client, upstream], [], [], 1.0)
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        return
                    if source is client:
                        from_client += data
                        upstream.sendall(data)
                        continue
                    budget = self.cut_after_bytes
                    if budget is not None and from_server + len(data) > budget:
                        client.sendall(data[: budget - from_server])
                        self.cuts.append(bytes(from_client))
                        return
                    from_server += len(data)
                    client.sendall(data)
        except (OSError, ValueError):  # closed by stop(), or by the other side
            return
        finally:
            with self._lock:
                self._close(client)
                self._close(upstream)


@pytest.fixture
def postgres_proxy():
    """A proxy in front of the test PostgreSQL (see PostgresProxy), stopped after the test."""
    admin = sa.engine.make_url(POSTGRES_ADMIN_URL)
    proxy = PostgresProxy((admin.host or "127.0.0.1", admin.port or 5432))
    yield proxy
    proxy.stop()


@pytest.fixture(params=["sqlite", "psycopg2", "psycopg"])
def airflow_url(request, tmp_path: Path) -> str:
    """An Airflow database (tests/test_sources.py, tests/test_queue_waits.py): SQLite, or PostgreSQL
    through psycopg2 and through psycopg 3."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'airflow.db'}"
    url = request.getfixturevalue("postgres_databases")()
    return url.replace("postgresql+psycopg2://", f"postgresql+{request.param}://")
