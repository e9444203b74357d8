"""The error-group catalog in faultline's own database (FAULTLINE_CATALOG_DB_URL, else FAULTLINE_DB_URL's):
each recorded day's clusters as the catalog matches them, and what follows from all of them, the
groups (id, label, first seen, last seen) and each group's count, share and state per day; and the
alerts raised on groups with their deliveries.

Recording a day replaces its clusters and recomputes the catalog as if from every recorded day in
date order (`faultline.catalog`), in one transaction that writers take in turn: days recorded in any
order, or a day recorded again, leave the catalog they would in date order. Only rows from the
recorded day on can change, so only those are rewritten. The replay as of each of the last recorded
days (7 by default) is kept (the checkpoint tables): a day goes on from the newest one before it, so
the daily run replays one day and a day of the last week recorded again a few; a day older than
them, or other settings, replays every day from the first.
"""

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from typing import ClassVar

import pandas as pd
import sqlalchemy as sa
from pydantic import Field, PrivateAttr

from faultline.catalog import (
    CLUSTER_COLUMNS,
    STATE_COLUMNS,
    CatalogReplay,
    CatalogSettings,
    DayClusters,
)
from resources.alert_store import _insert
from resources.sources import privilege_errors
from resources.sql import SqlResource, safe_url, to_utc

_metadata = sa.MetaData()
days_table = sa.Table(
    "error_catalog_days",
    _metadata,
    sa.Column("day", sa.String(10), primary_key=True),
    sa.Column("n_events", sa.Integer(), nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
)
clusters_table = sa.Table(
    "error_catalog_clusters",
    _metadata,
    sa.Column("day", sa.String(10), primary_key=True),
    sa.Column("cluster_id", sa.Integer(), primary_key=True),
    sa.Column("n_events", sa.Integer(), nullable=False),
    sa.Column("label", sa.Text(), nullable=False),
    sa.Column("hint", sa.Text(), nullable=False),
    sa.Column("signature", sa.Text(), nullable=False),  # JSON: {cleaned template: events}
)
groups_table = sa.Table(
    "error_groups",
    _metadata,
    sa.Column("group_id", sa.String(32), primary_key=True),
    sa.Column("label", sa.Text(), nullable=False),
    sa.Column("first_seen", sa.String(10), nullable=False),
    sa.Column("last_seen", sa.String(10), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # on the newest recorded day
)
group_days_table = sa.Table(
    "error_group_days",
    _metadata,
    sa.Column("day", sa.String(10), primary_key=True),
    sa.Column("group_id", sa.String(32), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("changed", sa.Boolean(), nullable=False),
    sa.Column("n_events", sa.Integer(), nullable=False),
    sa.Column("share", sa.Float(), nullable=False),
    sa.Column("baseline_events", sa.Integer(), nullable=False),
    sa.Column("expected_events", sa.Float(), nullable=False),
    sa.Column("p_value", sa.Float(), nullable=False),
    sa.Column("first_seen", sa.String(10), nullable=False),
    sa.Column("last_seen", sa.String(10)),
    sa.Column("label", sa.Text(), nullable=False),
)
# The replay as of each of the last recorded days (`CatalogReplay.memory()`): one row per day saying
# how many days and which settings it stands for, and one row per group and day. Recording a day
# deletes those of it and every later day, which it changes. A catalog made before these tables
# existed gets them empty, and its next recorded day replays every day and fills them.
CHECKPOINT_VERSION = 2  # what a row holds: another version is replayed afresh
_OLD_CHECKPOINT_TABLES = ("error_catalog_checkpoint", "error_catalog_checkpoint_groups")  # version 1's
checkpoint_table = sa.Table(
    "error_catalog_day_checkpoints",
    _metadata,
    sa.Column("day", sa.String(10), primary_key=True),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("n_days", sa.Integer(), nullable=False),  # recorded days it replayed: those up to `day`
    sa.Column("settings", sa.Text(), nullable=False),  # JSON: the CatalogSettings replayed with
    sa.Column("totals", sa.Text(), nullable=False),  # JSON: {day: events}, the days a baseline may count
)
checkpoint_groups_table = sa.Table(
    "error_catalog_day_checkpoint_groups",
    _metadata,
    sa.Column("day", sa.String(10), primary_key=True),
    sa.Column("group_id", sa.String(32), primary_key=True),
    sa.Column("hint", sa.Text(), nullable=False),
    sa.Column("templates", sa.Text(), nullable=False),  # JSON: every template it is indexed under
    # JSON: its signature's last days as shares, and their running sum as the replay holds it, each
    # [[template's place in `templates`], [share]]: a template's text once, not on every day.
    sa.Column("recent", sa.Text(), nullable=False),
    sa.Column("summed", sa.Text(), nullable=False),
    sa.Column("first_seen", sa.String(10), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("last_seen", sa.String(10)),
    sa.Column("absent", sa.Integer(), nullable=False),
    sa.Column("label", sa.Text(), nullable=False),
    sa.Column("counts", sa.Text(), nullable=False),  # JSON: {day: events} on its baseline's days
)
group_alerts_table = sa.Table(
    "error_group_alerts",
    _metadata,
    sa.Column("alert_id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("group_id", sa.String(32), nullable=False),
    sa.Column("day", sa.String(10), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("text", sa.Text(), nullable=False),
    sa.Column("n_events", sa.Integer(), nullable=False),
    sa.Column("share", sa.Float(), nullable=False),
    sa.Column("expected_events", sa.Float(), nullable=False),
    sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("group_id", "state", "day", name="error_group_alerts_once"),
)
group_deliveries_table = sa.Table(
    "error_group_alert_deliveries",
    _metadata,
    sa.Column("alert_id", sa.Integer(), sa.ForeignKey("error_group_alerts.alert_id"), primary_key=True),
    sa.Column("sink", sa.String(64), primary_key=True),
    sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=False),
    # "delivered", or "expired" for an alert too old to be worth sending when its sink came up.
    sa.Column("outcome", sa.String(16), nullable=False),
)
# One deliverer per sink at a time, as for the duration alerts: a run takes the sink's lease before
# its round and gives it back after; a run that finds it held by another, unexpired, leaves it.
group_claims_table = sa.Table(
    "error_group_alert_sink_claims",
    _metadata,
    sa.Column("sink", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(64), nullable=False),
    sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=False),
)
GROUP_COLUMNS = ["group_id", "label", "first_seen", "last_seen", "state"]
GROUP_ALERT_COLUMNS = [
    "alert_id", "group_id", "day", "state", "text", "n_events", "share", "expected_events", "raised_at",
]  # fmt: skip


def _needs_privileges(url: str) -> str:
    return (
        f"error catalog at {safe_url(url)}: the role may not create or write faultline's tables ("
        f"{', '.join(_metadata.tables)}); point FAULTLINE_CATALOG_DB_URL at a database of faultline's own"
    )


class ErrorCatalogStore(SqlResource):
    """The error groups across days (FAULTLINE_CATALOG_DB_URL, tables created on first use)."""

    url: str = Field(description="SQLAlchemy URL of the database that keeps the error-group catalog.")
    checkpoint_days: int = Field(
        default=7,
        ge=1,
        description="Keep the catalog's replay as of each of this many last recorded days: recording "
        "one of them again replays the days from it on, not every day (each costs one replay's rows).",
    )
    _schema_ready: bool = PrivateAttr(default=False)

    source_name: ClassVar[str] = "error catalog"
    settings_hint: ClassVar[str] = "FAULTLINE_CATALOG_DB_URL"

    @contextmanager
    def _connect(self) -> Iterator[sa.Connection]:
        with self.connect() as connection, privilege_errors(_needs_privileges(self.url)):
            if not self._schema_ready:
                _metadata.create_all(connection)
                for name in _OLD_CHECKPOINT_TABLES:  # derived data, replaced by the tables by day
                    sa.Table(name, sa.MetaData()).drop(connection, checkfirst=True)
                connection.commit()
                self._schema_ready = True
            yield connection

    def record_day(
        self, day: DayClusters, settings: CatalogSettings | None = None, recent_days: int | None = None
    ) -> pd.DataFrame:
        """Replace `day`'s clusters, recompute the catalog, and return every group's state
        (`faultline.catalog.STATE_COLUMNS`) on every recorded day, or with `recent_days` on the last
        that many recorded days up to `day` only (a report's trend needs no more)."""
        settings = settings or CatalogSettings()
        with self._connect() as connection:
            if connection.dialect.name == "postgresql":
                # Recorders take turns (readers do not wait): each goes on from what the last one left.
                connection.execute(sa.text(f"LOCK TABLE {days_table.name} IN SHARE ROW EXCLUSIVE MODE"))
            # On SQLite the first write takes the database's write lock until the commit: before any read.
            connection.execute(days_table.delete().where(days_table.c.day == day.day))
            connection.execute(clusters_table.delete().where(clusters_table.c.day == day.day))
            connection.execute(checkpoint_table.delete().where(checkpoint_table.c.day >= day.day))
            connection.execute(
                checkpoint_groups_table.delete().where(checkpoint_groups_table.c.day >= day.day)
            )
            replay, n_days = self._checkpoint(connection, settings, day.day)
            connection.execute(
                days_table.insert(),
                {"day": day.day, "n_events": day.n_events, "recorded_at": datetime.now(UTC)},
            )
            rows = [
                {
                    "day": day.day,
                    "cluster_id": int(cluster.cluster_id),
                    "n_events": int(cluster.n_events),
                    "label": cluster.label,
                    "hint": cluster.hint,
                    "signature": json.dumps(cluster.signature),
                }
                for cluster in day.clusters.itertuples(index=False)
            ]
            if rows:
                connection.execute(clusters_table.insert(), rows)
            # From the newest checkpoint before the day (none: every day from the first), keeping
            # one as of each of the last days; the rows of the day and after it are what changed.
            kept_from = self._nth_newest_day(connection, self.checkpoint_days)
            states = []
            for each in self._days(connection, after=replay.newest):
                states += [row for row in replay.step(each) if row[0] >= day.day]
                n_days += 1
                if each.day >= kept_from:
                    self._write_checkpoint(connection, replay, n_days)
            connection.execute(checkpoint_table.delete().where(checkpoint_table.c.day < kept_from))
            connection.execute(
                checkpoint_groups_table.delete().where(checkpoint_groups_table.c.day < kept_from)
            )
            self._write_derived(connection, states, replay, since=day.day)
            frame = self._read_states(connection, day.day, recent_days)
            connection.commit()
        return frame

    @staticmethod
    def _checkpoint(
        connection: sa.Connection, settings: CatalogSettings, day: str
    ) -> tuple[CatalogReplay, int]:
        """The replay kept as of the newest checkpoint before `day` and how many days it replayed,
        when it stands for exactly the days recorded up to it (none changed behind its back) with
        these settings; else a replay of no day yet."""
        kept = connection.execute(
            sa.select(checkpoint_table)
            .where(checkpoint_table.c.day < day)
            .order_by(checkpoint_table.c.day.desc())
        ).first()
        if (
            kept is None
            or kept.version != CHECKPOINT_VERSION
            or json.loads(kept.settings) != asdict(settings)
        ):
            return CatalogReplay(settings), 0
        n_days = connection.execute(
            sa.select(sa.func.count()).select_from(days_table).where(days_table.c.day <= kept.day)
        ).scalar_one()
        if n_days != kept.n_days:
            return CatalogReplay(settings), 0
        groups = connection.execute(
            sa.select(checkpoint_groups_table).where(checkpoint_groups_table.c.day == kept.day)
        ).mappings()
        return CatalogReplay(settings, kept.day, json.loads(kept.totals), map(_unpacked, groups)), n_days

    @staticmethod
    def _nth_newest_day(connection: sa.Connection, n: int) -> str:
        """The `n`th newest recorded day, or the oldest when fewer are recorded."""
        newest = sa.select(days_table.c.day).order_by(days_table.c.day.desc()).limit(n).subquery()
        return connection.execute(sa.select(sa.func.min(newest.c.day))).scalar_one()

    @staticmethod
    def _write_checkpoint(connection: sa.Connection, replay: CatalogReplay, n_days: int) -> None:
        newest, totals, groups = replay.memory()
        connection.execute(checkpoint_table.delete().where(checkpoint_table.c.day == newest))
        connection.execute(checkpoint_groups_table.delete().where(checkpoint_groups_table.c.day == newest))
        connection.execute(
            checkpoint_table.insert(),
            {"day": newest, "version": CHECKPOINT_VERSION, "n_days": n_days,
             "settings": json.dumps(asdict(replay.settings)), "totals": json.dumps(totals)},
        )  # fmt: skip
        if groups:
            connection.execute(
                checkpoint_groups_table.insert(),
                [{**_packed(group), "day": newest} for group in groups],
            )

    @staticmethod
    def _days(connection: sa.Connection, after: str | None = None) -> Iterator[DayClusters]:
        """Every recorded day in date order (or every day after `after`), its clusters read a day at
        a time."""
        query = sa.select(days_table.c.day, days_table.c.n_events).order_by(days_table.c.day)
        if after is not None:
            query = query.where(days_table.c.day > after)
        totals = connection.execute(query).all()
        for day, n_events in totals:
            clusters = pd.read_sql(sa.select(clusters_table).where(clusters_table.c.day == day), connection)
            clusters["signature"] = clusters["signature"].map(json.loads)
            yield DayClusters(day, int(n_events), clusters[CLUSTER_COLUMNS].reset_index(drop=True))

    @staticmethod
    def _write_derived(
        connection: sa.Connection, states: list[tuple], replay: CatalogReplay, since: str
    ) -> None:
        """The rows from `since` on (the days before are the same as before), and every group."""
        connection.execute(group_days_table.delete().where(group_days_table.c.day >= since))
        records = [
            {
                **dict(zip(STATE_COLUMNS, row, strict=True)),
                "changed": bool(row[3]),
                "n_events": int(row[4]),
                "share": float(row[5]),
                "baseline_events": int(row[6]),
                "expected_events": float(row[7]),
                "p_value": float(row[8]),
            }
            for row in states
        ]
        if records:
            connection.execute(group_days_table.insert(), records)
        connection.execute(groups_table.delete())
        groups = [
            {
                "group_id": group["group_id"],
                "label": group["label"],
                "first_seen": group["first_seen"],
                "last_seen": group["last_seen"],
                "state": group["state"],
            }
            for group in replay.memory()[2]
        ]
        if groups:
            connection.execute(groups_table.insert(), groups)

    @staticmethod
    def _read_states(
        connection: sa.Connection, day: str | None = None, recent_days: int | None = None
    ) -> pd.DataFrame:
        """The stored states of every day, or of the last `recent_days` recorded days up to `day`."""
        query = sa.select(group_days_table)
        if day is not None and recent_days is not None:
            recent = (
                sa.select(days_table.c.day)
                .where(days_table.c.day <= day)
                .order_by(days_table.c.day.desc())
                .limit(max(recent_days, 1))
            )
            first = connection.execute(sa.select(sa.func.min(recent.subquery().c.day))).scalar_one()
            query = query.where(group_days_table.c.day >= first, group_days_table.c.day <= day)
        query = query.order_by(
            group_days_table.c.day, group_days_table.c.n_events.desc(), group_days_table.c.group_id
        )
        frame = pd.read_sql(query, connection)
        frame["changed"] = frame["changed"].astype(bool)
        return frame[STATE_COLUMNS]

    def groups(self) -> pd.DataFrame:
        with self._connect() as connection:
            frame = pd.read_sql(sa.select(groups_table).order_by(groups_table.c.group_id), connection)
        return frame[GROUP_COLUMNS]

    def group_days(self) -> pd.DataFrame:
        """Every group's row on every recorded day from its first, as `record_day` returns them."""
        with self._connect() as connection:
            return self._read_states(connection)

    def record_alerts(self, alerts: pd.DataFrame, raised_at: datetime) -> pd.DataFrame:
        """Store an alert for each (group, state, day) not alerted before; return only the new ones."""
        rows = [
            {
                "group_id": str(row.group_id),
                "day": str(row.day),
                "state": str(row.state),
                "text": str(row.text),
                "n_events": int(row.n_events),
                "share": float(row.share),
                "expected_events": float(row.expected_events),
                "raised_at": to_utc(raised_at),
            }
            for row in alerts.itertuples(index=False)
        ]
        new = []
        with self._connect() as connection:
            if rows:
                statement = _insert(connection, group_alerts_table).returning(*group_alerts_table.c)
                new = connection.execute(statement, rows).mappings().all()
            connection.commit()
        return _alerts_frame(sorted(new, key=lambda alert: alert["alert_id"]))

    def undelivered(self, sink: str) -> pd.DataFrame:
        """Alerts `sink` has not received yet, oldest first."""
        delivered = sa.select(group_deliveries_table.c.alert_id).where(group_deliveries_table.c.sink == sink)
        query = (
            sa.select(group_alerts_table)
            .where(group_alerts_table.c.alert_id.not_in(delivered))
            .order_by(group_alerts_table.c.alert_id)
        )
        with self._connect() as connection:
            rows = connection.execute(query).mappings().all()
        return _alerts_frame(rows)

    def alerts(self) -> pd.DataFrame:
        with self._connect() as connection:
            query = sa.select(group_alerts_table).order_by(group_alerts_table.c.alert_id)
            rows = connection.execute(query).mappings().all()
        return _alerts_frame(rows)

    def mark_delivered(
        self, alert_ids: Iterable[int], sink: str, delivered_at: datetime, outcome: str = "delivered"
    ) -> None:
        """Record that `sink` is done with these alerts (sent, or expired); once per alert and sink."""
        rows = [
            {"alert_id": int(i), "sink": sink, "delivered_at": to_utc(delivered_at), "outcome": outcome}
            for i in alert_ids
        ]
        if not rows:
            return
        with self._connect() as connection:
            connection.execute(_insert(connection, group_deliveries_table), rows)
            connection.commit()

    def claim_sink(self, sink: str, holder: str, now: datetime, until: datetime) -> bool:
        """Take `sink`'s delivery lease for `holder` until `until`, unless another holder's lease runs
        past `now`. True when `holder` has it."""
        with self._connect() as connection:
            connection.execute(
                _insert(connection, group_claims_table),
                {"sink": sink, "holder": holder, "claimed_until": to_utc(until)},
            )
            taken = connection.execute(
                group_claims_table.update()
                .where(
                    group_claims_table.c.sink == sink,
                    sa.or_(
                        group_claims_table.c.holder == holder,
                        group_claims_table.c.claimed_until < to_utc(now),
                    ),
                )
                .values(holder=holder, claimed_until=to_utc(until))
            )
            connection.commit()
        return taken.rowcount == 1

    def release_sink(self, sink: str, holder: str) -> None:
        with self._connect() as connection:
            connection.execute(
                group_claims_table.delete().where(
                    group_claims_table.c.sink == sink, group_claims_table.c.holder == holder
                )
            )
            connection.commit()


def _packed(group: dict) -> dict:
    """A group's replay memory (`faultline.catalog.MEMORY_COLUMNS`) as a checkpoint row."""
    place = {text: i for i, text in enumerate(group["templates"])}

    def shares(by_text: dict[str, float]) -> list[list]:
        return [[place[text] for text in by_text], list(by_text.values())]

    return {
        **group,
        "templates": json.dumps(group["templates"]),
        "recent": json.dumps([shares(day) for day in group["recent"]]),
        "summed": json.dumps(shares(group["summed"])),
        "counts": json.dumps(group["counts"]),
    }


def _unpacked(row: sa.RowMapping) -> dict:
    templates = json.loads(row["templates"])

    def shares(places: list[int], values: list[float]) -> dict[str, float]:
        return dict(zip([templates[i] for i in places], values, strict=True))

    return {
        **row,
        "templates": templates,
        "recent": [shares(*day) for day in json.loads(row["recent"])],
        "summed": shares(*json.loads(row["summed"])),
        "counts": json.loads(row["counts"]),
    }


def _alerts_frame(rows: list) -> pd.DataFrame:
    alerts = pd.DataFrame([dict(row) for row in rows], columns=GROUP_ALERT_COLUMNS)
    if rows:
        alerts["raised_at"] = pd.to_datetime(alerts["raised_at"].map(to_utc), utc=True)
    return alerts
