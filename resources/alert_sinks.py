"""Alert sinks: Slack (through dagster-slack) and a generic JSON webhook, each on when configured.

The Dagster log always gets every alert, at the tick that raises it. A sink that fails keeps its
alerts pending in the alert store; the next tick tries them again, and an alert a sink has
received is never sent to it twice.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd
import requests
from dagster_slack import SlackResource
from pydantic import Field
from slack_sdk.errors import SlackApiError

from faultline.alerting import alert_payload, alert_text
from resources.alert_store import AlertStore


@dataclass
class DeliveryReport:
    """What one delivery round did, per sink: alerts delivered, and the failures with their cause."""

    delivered: dict[str, int] = field(default_factory=dict)
    expired: dict[str, int] = field(default_factory=dict)
    failed: dict[str, list[str]] = field(default_factory=dict)


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
        description="How long one delivery may wait for the sink before it counts as failed: with a sink "
        "that accepts and never answers, a tick still ends (after about this long per sink).",
    )
    max_alert_age_hours: float = Field(
        default=24.0,
        description="Older pending alerts are recorded as expired, not sent: a sink switched on, or back "
        "after a long outage, is not flooded with alerts about runs long over.",
    )

    def sink_names(self) -> list[str]:
        return [name for name, on in (("slack", self.slack_token), ("webhook", self.webhook_url)) if on]

    def _slack_sender(self) -> Callable[[dict], None]:
        client = SlackResource(token=self.slack_token).get_client()
        client.base_url = self.slack_api_url
        # As given: int() made a timeout under a second 0, which urllib takes as "do not wait at all".
        client.timeout = self.timeout_seconds

        def send(alert: dict) -> None:
            client.chat_postMessage(channel=self.slack_channel, text=alert_text(alert))

        return send

    def _webhook_sender(self, session: requests.Session) -> Callable[[dict], None]:
        def send(alert: dict) -> None:
            response = session.post(self.webhook_url, json=alert_payload(alert), timeout=self.timeout_seconds)
            response.raise_for_status()

        return send

    @contextmanager
    def sender(self, sink: str) -> Iterator[Callable[[dict], None]]:
        """A function sending one alert to `sink`, for one round: the webhook's round keeps its
        connection open (a new TCP connection per alert was most of a round's time)."""
        if sink == "slack":
            yield self._slack_sender()
            return
        with requests.Session() as session:
            yield self._webhook_sender(session)


def _failure_cause(error: Exception, timeout_seconds: float) -> str:
    """Why a delivery failed, in words that hold no URL or token (a webhook's URL may be its secret)."""
    if isinstance(error, requests.Timeout | TimeoutError):
        return f"no answer within {timeout_seconds:g} s"
    if isinstance(error, requests.HTTPError) and error.response is not None:
        return f"HTTP {error.response.status_code}"
    if isinstance(error, SlackApiError):
        return f"Slack answered HTTP {error.response.status_code}, error {error.response.get('error')!r}"
    return type(error).__name__


def deliver_pending_alerts(
    store: AlertStore, sinks: AlertSinks, now: datetime | None = None
) -> DeliveryReport:
    """Send every alert a configured sink has not received yet; record the round's deliveries.

    A sink that fails on one alert is not tried again this round (it is likely down); its pending
    alerts wait for the next call. The failure's cause is kept without the sink's URL or token.
    Alerts raised more than `max_alert_age_hours` before `now` (default: the clock's time) are recorded
    as expired for the sink instead. A sink's deliveries are recorded in one transaction after its
    round, also when the round fails part-way; a process killed mid-round sends those alerts again.
    """
    report = DeliveryReport()
    now = now or datetime.now(UTC)
    oldest = pd.Timestamp(now - timedelta(hours=sinks.max_alert_age_hours))
    for sink in sinks.sink_names():
        pending = store.undelivered(sink)
        stale = pending["raised_at"] < oldest
        store.mark_delivered(pending.loc[stale, "alert_id"], sink, now, outcome="expired")
        report.expired[sink] = int(stale.sum())
        delivered: list[int] = []
        alert_id = None
        try:
            with sinks.sender(sink) as send:
                for alert in pending[~stale].to_dict(orient="records"):
                    alert_id = alert["alert_id"]
                    send(alert)
                    delivered.append(alert_id)
        except Exception as error:  # noqa: BLE001 - any failure leaves the sink's remaining alerts pending
            report.failed[sink] = [f"alert {alert_id}: {_failure_cause(error, sinks.timeout_seconds)}"]
        finally:
            store.mark_delivered(delivered, sink, datetime.now(UTC))
        report.delivered[sink] = len(delivered)
    return report
