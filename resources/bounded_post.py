"""JSON POSTs that a slow or hostile server cannot stretch: one deadline for the whole request, a
bounded answer, no redirects.

`requests` and Slack's SDK bound each socket read, not the request: a server answering a byte a
second keeps them forever, and one streaming an endless body fills memory. Here a timer shuts the
socket at the deadline whatever phase the request is in (connect, TLS, headers, body), at most
`max_answer_bytes` of the answer are read, and a 3xx is a failure: a redirect would re-post the
alert, and its secret URL's payload, wherever `Location` points.
"""

import http.client
import json
import socket
import ssl
import threading
import time
import urllib.parse
import urllib.request

# Enough for any sink's acknowledgement (Slack's is a few hundred bytes); a longer answer is cut.
MAX_ANSWER_BYTES = 64 * 1024


class DeliveryFailed(Exception):
    """A POST that did not succeed; the message holds the cause, never the URL (it may be a secret)."""


class BoundedPoster:
    """POSTs JSON to one URL over one kept-alive connection, each request within `deadline_s`."""

    def __init__(
        self, url: str, deadline_s: float, headers: dict[str, str] | None = None,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:  # fmt: skip
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise DeliveryFailed("the sink's URL is not an http(s) URL")
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port or (443 if self._https else 80)
        self._target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
        self._url = url
        self._deadline_s, self._max_answer_bytes = deadline_s, max_answer_bytes
        self._headers = {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
        self._connection: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        """A connection to the host, through the proxy the environment names for it, if any."""
        proxy = (
            None
            if urllib.request.proxy_bypass(self._host)
            else urllib.request.getproxies().get("https" if self._https else "http")
        )
        if proxy:
            proxied = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
            address = (proxied.hostname, proxied.port or 80)
        else:
            address = (self._host, self._port)
        if self._https:
            connection = http.client.HTTPSConnection(
                *address, timeout=self._deadline_s, context=ssl.create_default_context()
            )
            if proxy:
                connection.set_tunnel(self._host, self._port)
        else:
            connection = http.client.HTTPConnection(*address, timeout=self._deadline_s)
            if proxy:
                self._target = self._url  # an HTTP proxy takes the absolute URL
        return connection

    def post_json(self, payload: object) -> tuple[int, bytes]:
        """Send `payload`; the 2xx status and at most `max_answer_bytes` of the answer.

        Raises DeliveryFailed for a non-2xx status (a 3xx names itself as a redirect not followed),
        an answer not complete by the deadline, or any connection error.
        """
        body = json.dumps(payload).encode()
        connection = self._connection or self._connect()
        self._connection = None
        expired = threading.Event()

        def cut() -> None:
            expired.set()
            if connection.sock is not None:
                try:
                    connection.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed

        timer = threading.Timer(self._deadline_s, cut)
        timer.daemon = True
        started = time.monotonic()
        timer.start()
        try:
            connection.request("POST", self._target, body=body, headers=self._headers)
            answer = connection.getresponse()
            content = answer.read(self._max_answer_bytes + 1)
            whole = len(content) <= self._max_answer_bytes and answer.isclosed()
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            if expired.is_set() or isinstance(error, TimeoutError | socket.timeout):
                raise DeliveryFailed(f"no answer within {self._deadline_s:g} s") from None
            raise DeliveryFailed(f"connection failed ({type(error).__name__})") from None
        finally:
            timer.cancel()
        if expired.is_set() or time.monotonic() - started > self._deadline_s:
            connection.close()
            raise DeliveryFailed(f"no answer within {self._deadline_s:g} s")
        if whole and not answer.will_close:
            self._connection = connection  # kept for the next alert of the round
        else:
            connection.close()
        if 300 <= answer.status < 400:
            raise DeliveryFailed(f"HTTP {answer.status}: a redirect, not followed")
        if not 200 <= answer.status < 300:
            raise DeliveryFailed(f"HTTP {answer.status}")
        return answer.status, content[: self._max_answer_bytes]

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def __enter__(self) -> "BoundedPoster":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
