"""A sink that trickles, streams forever, redirects, or is raced by a second tick cannot hold the
sensor, fill its memory, move an alert elsewhere, or get an alert twice."""

import json
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pandas as pd
import pytest

from resources.alert_sinks import AlertSinks, deliver_pending_alerts
from resources.alert_store import AlertStore
from resources.bounded_post import MAX_ANSWER_BYTES, BoundedPoster, DeliveryFailed

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
# What the old client needed against these servers: forever, or until memory ran out.
TRICKLE_S = 60.0


class RawServer:
    """A TCP server on loopback whose every connection is handled by `serve(connection)`."""

    def __init__(self, serve: Callable[[socket.socket], None]) -> None:
        self.requests: list[bytes] = []
        self.bytes_sent = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/hook"
        self._serve = serve
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(connection,), daemon=True).start()

    def _handle(self, connection: socket.socket) -> None:
        with connection:
            connection.settimeout(TRICKLE_S)
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = connection.recv(65536)
                if not chunk:
                    return
                request += chunk
            head, _, body = request.partition(b"\r\n\r\n")
            length = int(next((line.split(b":")[1] for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length")), b"0"))  # fmt: skip
            while len(body) < length:
                body += connection.recv(65536)
            self.requests.append(head + b"\r\n\r\n" + body)
            try:
                self._serve(connection, self)
            except OSError:
                pass  # the client hung up: what these tests want of it

    def send(self, connection: socket.socket, data: bytes) -> None:
        connection.sendall(data)
        self.bytes_sent += len(data)

    def close(self) -> None:
        self._stop.set()
        self._listener.close()


@pytest.fixture
def raw_server():
    servers: list[RawServer] = []

    def start(serve) -> RawServer:
        servers.append(RawServer(serve))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def trickle_headers(connection: socket.socket, server: RawServer) -> None:
    for byte in b"HTTP/1.1 200 OK\r\n" + b"X-Pad: y\r\n" * 90 + b"Content-Length: 0\r\n\r\n":
        server.send(connection, bytes([byte]))
        time.sleep(TRICKLE_S / 1000)


def trickle_body(connection: socket.socket, server: RawServer) -> None:
    server.send(connection, b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    for _ in range(1000):
        server.send(connection, b"x")
        time.sleep(TRICKLE_S / 1000)


def endless_body(connection: socket.socket, server: RawServer) -> None:
    server.send(connection, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (65536, b"y" * 65536)
    deadline = time.monotonic() + TRICKLE_S
    while time.monotonic() < deadline:
        server.send(connection, chunk)


@pytest.mark.parametrize("serve", [trickle_headers, trickle_body], ids=["headers", "body"])
def test_a_sink_answering_a_byte_at_a_time_fails_at_the_deadline(raw_server, serve):
    server = raw_server(serve)
    started = time.monotonic()
    with pytest.raises(DeliveryFailed, match="no answer within 1 s"):
        with BoundedPoster(server.url, 1.0) as poster:
            poster.post_json({"alert_id": 1})
    # Each byte came within the socket timeout: only a deadline on the whole request ends it.
    assert time.monotonic() - started < TRICKLE_S / 4


def test_a_sink_streaming_an_endless_answer_is_read_no_further_than_the_bound(raw_server):
    server = raw_server(endless_body)
    with BoundedPoster(server.url, 5.0) as poster:
        status, answer = poster.post_json({"alert_id": 1})
    assert status == 200 and len(answer) == MAX_ANSWER_BYTES
    time.sleep(0.2)  # the server notices the closed connection at its next writes
    # What reached the client's socket buffers, not the gigabytes a reader to the end would take.
    assert server.bytes_sent < 20 * 1024 * 1024


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_a_failure_that_names_it_and_is_not_followed(raw_server, status):
    target = raw_server(lambda connection, server: server.send(connection, b"HTTP/1.1 200 OK\r\n\r\n"))

    def redirect(connection: socket.socket, server: RawServer) -> None:
        server.send(
            connection,
            f"HTTP/1.1 {status} Moved\r\nLocation: {target.url}\r\nContent-Length: 0\r\n\r\n".encode(),
        )

    webhook = raw_server(redirect)
    with pytest.raises(DeliveryFailed, match=f"HTTP {status}: a redirect, not followed"):
        with BoundedPoster(webhook.url, 5.0) as poster:
            poster.post_json({"alert_id": 1, "text": "secret-bearing alert"})
    assert len(webhook.requests) == 1 and target.requests == []


def overdue(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "task_type": "etl.orders",
            "run_id": [f"run-{i}" for i in range(n)],
            "started_at": pd.Timestamp(NOW) - pd.Timedelta(hours=2),
            "elapsed_s": 7200.0,
            "upper_limit_s": 3600.0,
            "mean_s": 1800.0,
            "n_runs": 40,
        }
    )


def slow_acceptor(received: list[int]):
    def serve(connection: socket.socket, server: RawServer) -> None:
        time.sleep(0.1)
        received.append(json.loads(server.requests[-1].partition(b"\r\n\r\n")[2])["alert_id"])
        server.send(connection, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    return serve


def test_a_redirecting_webhook_keeps_the_alert_pending(store_url, raw_server):
    store = AlertStore(url=store_url)
    store.record_alerts(overdue(1), raised_at=NOW)
    webhook = raw_server(
        lambda connection, server: server.send(
            connection,
            b"HTTP/1.1 302 Found\r\nLocation: https://login.example.com/\r\nContent-Length: 0\r\n\r\n",
        )
    )
    report = deliver_pending_alerts(store, AlertSinks(webhook_url=webhook.url), now=NOW)
    assert report.delivered == {"webhook": 0}
    assert report.failed == {"webhook": ["alert 1: HTTP 302: a redirect, not followed"]}
    assert store.undelivered("webhook")["run_id"].tolist() == ["run-0"]


def test_two_ticks_delivering_at_once_send_each_alert_once(postgres_url, raw_server):
    store = AlertStore(url=postgres_url)
    store.record_alerts(overdue(6), raised_at=NOW)
    received: list[int] = []
    webhook = raw_server(slow_acceptor(received))
    sinks = AlertSinks(webhook_url=webhook.url)
    barrier = threading.Barrier(2)
    reports = []

    def tick() -> None:
        barrier.wait()
        reports.append(deliver_pending_alerts(AlertStore(url=postgres_url), sinks, now=NOW))

    ticks = [threading.Thread(target=tick) for _ in range(2)]
    for thread in ticks:
        thread.start()
    for thread in ticks:
        thread.join()
    assert sorted(received) == list(range(1, 7))
    assert sorted(report.delivered.get("webhook", 0) for report in reports) == [0, 6]
    assert sorted(len(report.busy) for report in reports) == [0, 1]
    assert store.undelivered("webhook").empty


def test_a_lease_left_by_a_dead_tick_expires(store_url):
    store = AlertStore(url=store_url)
    assert store.claim_sink("webhook", "dead-tick", NOW, NOW + pd.Timedelta(minutes=2))
    assert not store.claim_sink("webhook", "next-tick", NOW + pd.Timedelta(minutes=1), NOW)
    later = NOW + pd.Timedelta(minutes=3)
    assert store.claim_sink("webhook", "next-tick", later, later + pd.Timedelta(minutes=2))
    store.release_sink("webhook", "next-tick")
    assert store.claim_sink("webhook", "third-tick", later, later + pd.Timedelta(minutes=2))


def test_a_tick_with_a_trickling_webhook_ends_at_its_deadline(store_url, raw_server):
    store = AlertStore(url=store_url)
    store.record_alerts(overdue(3), raised_at=NOW)
    webhook = raw_server(trickle_body)
    started = time.monotonic()
    report = deliver_pending_alerts(store, AlertSinks(webhook_url=webhook.url, timeout_seconds=1.0), now=NOW)
    assert time.monotonic() - started < TRICKLE_S / 4
    assert report.failed == {"webhook": ["alert 1: no answer within 1 s"]}
    assert len(store.undelivered("webhook")) == 3


def test_slack_shows_a_task_named_with_control_sequences_literally(store_url, recording_server):
    store = AlertStore(url=store_url)
    runs = overdue(1).assign(task_type="<!channel> deploy <https://evil.example|click> & co")
    store.record_alerts(runs, raised_at=NOW)
    slack = recording_server(slack=True)
    sinks = AlertSinks(slack_token="xoxb-test", slack_api_url=slack.url)
    assert deliver_pending_alerts(store, sinks, now=NOW).delivered == {"slack": 1}
    text = slack.received[0]["body"]["text"]
    assert "&lt;!channel&gt; deploy &lt;https://evil.example|click&gt; &amp; co" in text
    assert "<" not in text and ">" not in text
