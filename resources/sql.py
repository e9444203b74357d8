"""What every SQL-backed resource shares: engines, safe identifiers, errors without passwords."""

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

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


def safe_url(url: str) -> str:
    """The URL as it can be shown: the password replaced by ***."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparseable database URL>"


# A server that never answers (a dropped route, a firewall) fails the connection after this long,
# not after the operating system's minutes: within Dagster's 60 s limit on a sensor tick, and before
# a step's retry. A `connect_timeout` in the URL wins.
CONNECT_TIMEOUT_S = 10


class SourceUnavailableError(RuntimeError):
    """A data source could not be read; the message names it and the cause, never a password."""


@contextmanager
def connect(url: str, source: str) -> Iterator[sa.Connection]:
    """A connection to `url`; failures become SourceUnavailableError naming `source`."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    connect_args: dict[str, object] = {}
    if url.startswith("postgresql"):
        # Naive timestamps are UTC throughout; PostgreSQL would read them in the session's time zone.
        connect_args["options"] = "-c timezone=UTC"
        if "connect_timeout" not in sa.engine.make_url(url).query:
            connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
    engine = sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    try:
        with engine.connect() as connection:
            yield connection
    except sa.exc.OperationalError as error:
        cause = str(error.orig).strip().splitlines()[0] if error.orig else type(error).__name__
        raise SourceUnavailableError(f"{source} at {safe_url(url)} could not be read: {cause}") from None
    finally:
        engine.dispose()


def table_reference(name: str) -> tuple[str | None, str]:
    schema, _, table = name.rpartition(".")
    return (schema or None), table


def to_utc(moment: datetime) -> datetime:
    """Aware UTC; naive datetimes from a store are taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
