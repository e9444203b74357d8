"""Alert sinks: Slack (its Web API) and a generic JSON webhook, each on when configured.

The Dagster log always gets every alert, at the tick that raises it. A sink that fails keeps its
alerts pending in the alert store; the next tick tries them again, and an alert a sink has
received is never sent to it twice.
"""

import json
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd
from pydantic import Field

from faultline.alerting import alert_payload, slack_text
from resources.alert_store import AlertStore
from resources.bounded_post import BoundedPoster, DeliveryFailed


@dataclass
class DeliveryReport:
    """What one delivery round did, per sink: alerts delivered, and the failures with their cause."""

    delivered: dict[str, int] = field(default_factory=dict)
    expired: dict[str, int] = field(default_factory=dict)
    failed: dict[str, list[str]] = field(default_factory=dict)
    # Left for the next tick: the round's time budget ran out; another tick was delivering to the sink.
    deferred: dict[str, int] = field(default_factory=dict)
    busy: list[str] = field(default_factory=list)


class AlertSinks(dg.ConfigurableResource):
    """Where alerts go besides the Dagster log. A sink is on when its settings are given."""

    slack_token: str | None = Field(default=None, description="Slack bot token (FAULTLINE_SLACK_TOKEN).")
    slack_channel: str = Field(default="#alerts", description="Channel to post to (FAULTLINE_SLACK_CHANNEL).")
    slack_api_url: str = Field(default="https://slack.com/api/", description="Slack's Web API base URL.")
    webhook_url: str | None = Field(
        default=None, description="URL that receives each alert as a JSON POST (FAULTLINE_ALERT_WEBHOOK_URL)."
    )
    timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        allow_inf_nan=False,
        description="How long one delivery may take in all (connecting, sending, the whole answer) before "
        "it counts as failed: a sink that never answers, or answers a byte a second, costs a tick this "
        "long at most.",
    )
    max_alert_age_hours: float = Field(
        default=24.0,
        description="Older pending alerts are recorded as expired, not sent: a sink switched on, or back "
        "after a long outage, is not flooded with alerts about runs long over.",
    )

    delivery_budget_seconds: float = Field(
        default=30.0,
        gt=0,
        description="A tick starts no delivery after this long, so with the timeout it ends well within "
        "Dagster's 60 s limit on a tick; what is left waits for the next tick.",
    )

    def sink_names(self) -> list[str]:
        return [name for name, on in (("slack", self.slack_token), ("webhook", self.webhook_url)) if on]

    @contextmanager
    def sender(self, sink: str) -> Iterator[Callable[[dict], None]]:
        """A function sending one alert to `sink`, for one round over one kept-alive connection."""
        if sink == "slack":
            poster = BoundedPoster(
                urllib.parse.urljoin(self.slack_api_url, "chat.postMessage"),
                self.timeout_seconds,
                headers={"Authorization": f"Bearer {self.slack_token}"},
            )

            def send(alert: dict) -> None:
                _, answer = poster.post_json({"channel": self.slack_channel, "text": slack_text(alert)})
                _check_slack_answer(answer)

        else:
            poster = BoundedPoster(self.webhook_url, self.timeout_seconds)

            def send(alert: dict) -> None:
                poster.post_json(alert_payload(alert))

        with poster:
            yield send


def _check_slack_answer(answer: bytes) -> None:
    """Slack answers 200 with `ok: false` when it refuses a message."""
    try:
        verdict = json.loads(answer)
    except ValueError:
        raise DeliveryFailed("Slack's answer is not JSON") from None
    if not isinstance(verdict, dict) or verdict.get("ok") is not True:
        error = verdict.get("error") if isinstance(verdict, dict) else None
        raise DeliveryFailed(f"Slack refused the message, error {str(error)[:100]!r}")


def deliver_pending_alerts(
    store: AlertStore, sinks: AlertSinks, now: datetime | None = None
) -> DeliveryReport:
    """Send every alert a configured sink has not received yet; record the round's deliveries.

    A sink that fails on one alert is not tried again this round (it is likely down); its pending
    alerts wait for the next call. The failure's cause is kept without the sink's URL or token.
    Alerts raised more than `max_alert_age_hours` before `now` (default: the clock's time) are recorded
    as expired for the sink instead. A sink's deliveries are recorded in one transaction after its
    round, also when the round fails part-way; a process killed mid-round sends those alerts again.
    One tick delivers to a sink at a time: a tick that finds another's round under way skips it.
    """
    report = DeliveryReport()
    now = now or datetime.now(UTC)
    oldest = pd.Timestamp(now - timedelta(hours=sinks.max_alert_age_hours))
    holder = uuid.uuid4().hex
    started = time.monotonic()
    # Held past the round's longest possible end, so a tick that died holding it frees it soon after.
    lease = timedelta(seconds=sinks.delivery_budget_seconds + 2 * sinks.timeout_seconds + 30)
    for sink in sinks.sink_names():
        claimed_at = datetime.now(UTC)
        if not store.claim_sink(sink, holder, claimed_at, claimed_at + lease):
            report.busy.append(sink)
            continue
        try:
            _deliver_to(sink, store, sinks, now, oldest, started, report)
        finally:
            store.release_sink(sink, holder)
    return report


def _deliver_to(
    sink: str, store: AlertStore, sinks: AlertSinks, now: datetime, oldest: pd.Timestamp,
    started: float, report: DeliveryReport,
) -> None:  # fmt: skip
    pending = store.undelivered(sink)
    stale = pending["raised_at"] < oldest
    store.mark_delivered(pending.loc[stale, "alert_id"], sink, now, outcome="expired")
    report.expired[sink] = int(stale.sum())
    delivered: list[int] = []
    alert_id = None
    try:
        with sinks.sender(sink) as send:
            for alert in pending[~stale].to_dict(orient="records"):
                if time.monotonic() - started > sinks.delivery_budget_seconds:
                    report.deferred[sink] = int((~stale).sum()) - len(delivered)
                    break
                alert_id = alert["alert_id"]
                send(alert)
                delivered.append(alert_id)
    except DeliveryFailed as error:
        report.failed[sink] = [f"alert {alert_id}: {error}"]
    finally:
        store.mark_delivered(delivered, sink, datetime.now(UTC))
    report.delivered[sink] = len(delivered)
