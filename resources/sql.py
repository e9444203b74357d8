"""What every SQL-backed resource shares: engines, safe identifiers, errors without passwords."""

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import dagster as dg
import sqlalchemy as sa
from pydantic import Field

from resources.outages import RetriedOnOutage, SourceConfigurationError, SourceUnavailableError

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def data_dir() -> Path:
    """Where the embedded demo keeps its files: FAULTLINE_DATA_DIR, else `data/` in the project."""
    configured = os.environ.get("FAULTLINE_DATA_DIR")
    return Path(configured) if configured else Path(__file__).resolve().parents[1] / "data"


def env_or_default(name: str, default: str | dg.EnvVar | None) -> str | dg.EnvVar | None:
    """`EnvVar(name)` when it is set, else the default.

    An EnvVar is what the UI shows (its name, never its value), so a URL holding a password is
    always passed this way.
    """
    return dg.EnvVar(name) if os.environ.get(name) else default


def default_store_url() -> str | dg.EnvVar:
    """faultline's own database (FAULTLINE_DB_URL), else the embedded SQLite file of the demo."""
    return env_or_default("FAULTLINE_DB_URL", f"sqlite:///{data_dir() / 'faultline.db'}")


def validate_identifier(name: str, setting: str, qualified: bool = True) -> str:
    """A table or column name as given, if it is a plain SQL identifier (`schema.table` if qualified)."""
    parts = name.split(".") if qualified else [name]
    # fullmatch: `$` in match() would let a trailing newline through.
    if len(parts) > 2 or not all(_IDENTIFIER.fullmatch(part) for part in parts):
        form = "optionally schema.table" if qualified else "no dots"
        raise ValueError(
            f"{setting}={name!r} is not a plain SQL identifier (letters, digits and underscores, "
            f"{form}); rename it or create a view with such a name"
        )
    return name


# From a query key named like a secret to the end: its value may hold an unescaped `&`.
_SECRET_QUERY_VALUE = re.compile(r"((?:pass|pwd|secret|token|key)[^=&]*=).*", re.IGNORECASE | re.DOTALL)


def safe_url(url: str) -> str:
    """The URL as it can be shown: everything between `://` and the last `@` but the user name, and
    everything from a query key named like a secret on, replaced by ***.

    Not parsed by SQLAlchemy: a password holding `@`, `/` or `:` unescaped splits elsewhere there, and
    the part after its first `@` would show. Cutting at the last `@` can only hide too much.
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        return "<unparseable database URL>"
    userinfo, at, location = _SECRET_QUERY_VALUE.sub(r"\1***", rest).rpartition("@")
    shown = f"{userinfo.split(':', 1)[0]}:***@" if at else ""
    return f"{scheme}://{shown}{location}"


# A server that never answers (a dropped route, a firewall) fails the connection after this long,
# not after the operating system's minutes: within Dagster's 60 s limit on a sensor tick, and before
# a step's retry. A `connect_timeout` in the URL wins.
CONNECT_TIMEOUT_S = 10


# PostgreSQL SQLSTATE classes of a passing fault: connection exception, insufficient resources
# (too many connections), operator intervention (shutdown, cannot connect now, statement canceled),
# system error; and the two transaction failures a rerun resolves. Everything else (28 invalid
# authorization, 3D000 no such database, 42 undefined table or column, no privilege) is configuration.
_TRANSIENT_SQLSTATE_CLASSES = ("08", "53", "57", "58")
_TRANSIENT_SQLSTATES = ("40001", "40P01")
# SQLite's result codes of a passing fault: busy, locked, I/O error, protocol error.
_TRANSIENT_SQLITE_ERRORS = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_PROTOCOL")
# psycopg2 reports a refused login without a SQLSTATE: these words tell it from a network failure.
_CONFIGURATION_WORDS = (
    "authentication failed",
    "does not exist",
    "no pg_hba.conf entry",
    "permission denied",
)


def _sqlstate(error: BaseException | None) -> str | None:
    # psycopg2 calls it pgcode, psycopg 3 sqlstate.
    return getattr(error, "pgcode", None) or getattr(error, "sqlstate", None)


def is_outage(error: sa.exc.DBAPIError) -> bool:
    """Whether a database error is a passing fault (the server down, the connection lost, too busy),
    as opposed to one in the configuration or the query, which a retry would only repeat."""
    if error.connection_invalidated:
        return True
    original = error.orig
    state = _sqlstate(original)
    if state:
        return state[:2] in _TRANSIENT_SQLSTATE_CLASSES or state in _TRANSIENT_SQLSTATES
    sqlite_error = getattr(original, "sqlite_errorname", None)
    if sqlite_error is not None:
        return sqlite_error.startswith(_TRANSIENT_SQLITE_ERRORS)
    # No code: libpq's own failures (refused, timed out, closed unexpectedly) and refused logins.
    text = str(original).lower()
    return isinstance(error, sa.exc.OperationalError) and not any(w in text for w in _CONFIGURATION_WORDS)


def _first_line(error: sa.exc.DBAPIError, url: str) -> str:
    """The driver's first line, with every piece of the URL's password taken out: a password holding
    a raw `@` makes the driver name a host that is partly password."""
    line = str(error.orig).strip().splitlines()[0] if error.orig else type(error).__name__
    userinfo = url.partition("://")[2].rpartition("@")[0]
    password = userinfo.partition(":")[2]
    for piece in sorted({password, *re.split(r"[@:/?#&=%\s]", password)}, key=len, reverse=True):
        if len(piece) >= 3:
            line = line.replace(piece, "***")
    return line


class SqlResource(RetriedOnOutage):
    """A resource on one SQL database: a pooled engine for its URL, errors sorted into outages and
    configuration errors, neither holding a password.

    The engine is kept for the process's life, one per URL: Dagster builds resources anew for every
    run and sensor tick, and an engine per resource object would still open a connection (about
    30 ms on PostgreSQL) at every tick.
    """

    url: str = Field(description="SQLAlchemy URL of the database.")

    # What the errors call the database, and the settings a configuration error points to.
    source_name: ClassVar[str] = "database"
    settings_hint: ClassVar[str] = "its URL"

    def engine(self) -> sa.Engine:
        try:
            return engine_for(self.url)
        except (sa.exc.ArgumentError, ValueError):
            # Their text quotes the URL, or a piece of it where a password broke the parse.
            raise SourceConfigurationError(
                f"{self.source_name} at {safe_url(self.url)}: the URL cannot be read; check "
                f"{self.settings_hint} (percent-encode reserved characters such as @ : / ? # in the password)"
            ) from None

    @contextmanager
    def connect(self) -> Iterator[sa.Connection]:
        """A pooled connection; database errors become SourceUnavailableError (an outage) or
        SourceConfigurationError (anything a retry would repeat), naming the source."""
        engine = self.engine()
        with translated_errors(self.url, self.source_name, self.settings_hint):
            with engine.connect() as connection:
                yield connection


_engines: dict[str, sa.Engine] = {}
_engines_lock = threading.Lock()


def engine_for(url: str) -> sa.Engine:
    """The process's engine for `url`, made at its first use."""
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = create_engine(url)
        return engine


def dispose_engines() -> None:
    """Close every pooled connection of the process (the next use opens new ones)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def create_engine(url: str) -> sa.Engine:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    connect_args: dict[str, object] = {}
    if url.startswith("postgresql"):
        # Naive timestamps are UTC throughout; PostgreSQL would read them in the session's time zone.
        connect_args["options"] = "-c timezone=UTC"
        if "connect_timeout" not in sa.engine.make_url(url).query:
            connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
    # pre_ping: a pooled connection the server dropped since its last use is replaced, not failed.
    return sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)


@contextmanager
def translated_errors(url: str, source: str, settings_hint: str) -> Iterator[None]:
    """Database errors inside the block as SourceUnavailableError or SourceConfigurationError.

    An integrity or data error (a duplicate key, a value out of range) is the caller's to handle and
    passes unchanged; SQLAlchemy's texts of those hold the statement, never the URL.
    """
    try:
        yield
    except (sa.exc.OperationalError, sa.exc.ProgrammingError, sa.exc.InterfaceError) as error:
        if is_outage(error):
            raise SourceUnavailableError(
                f"{source} at {safe_url(url)} could not be read: {_first_line(error, url)}"
            ) from None
        raise SourceConfigurationError(
            f"{source} at {safe_url(url)} is not as configured: {_first_line(error, url)}; "
            f"check {settings_hint} (not retried: a configuration error)"
        ) from None


def table_reference(name: str) -> tuple[str | None, str]:
    schema, _, table = name.rpartition(".")
    return (schema or None), table


def to_utc(moment: datetime) -> datetime:
    """Aware UTC; naive datetimes from a store are taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
