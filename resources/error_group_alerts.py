"""Alerts on error groups (new, escalating) through the duration alerts' sinks: Slack and the JSON
webhook, as `AlertSinks` configures them.

As with the duration alerts, an alert is kept in the catalog's database before it is sent; a sink
that fails keeps its alerts pending for the next materialization of any day, and an alert a sink
has received is never sent to it again. Alerts older than the sinks' `max_alert_age_hours` when a
sink comes up are recorded as expired, not sent.
"""

import time
import urllib.parse
import uuid
from datetime import UTC, datetime, timedelta

import pandas as pd

from resources.alert_sinks import AlertSinks, DeliveryReport, _check_slack_answer
from resources.bounded_post import BoundedPoster, DeliveryFailed
from resources.error_catalog import ErrorCatalogStore


def group_alert_payload(alert: dict) -> dict[str, object]:
    """The alert as JSON for a webhook: `kind` tells it from a duration alert."""
    return {
        "kind": "error_group",
        "alert_id": int(alert["alert_id"]),
        "group_id": str(alert["group_id"]),
        "day": str(alert["day"]),
        "state": str(alert["state"]),
        "n_events": int(alert["n_events"]),
        "share": float(alert["share"]),
        "expected_events": float(alert["expected_events"]),
        "raised_at": pd.Timestamp(alert["raised_at"]).isoformat(),
        "text": str(alert["text"]),
    }


def _slack_text(alert: dict) -> str:
    # Slack's formatting rules: a label holding `<!channel>` pings no one.
    return str(alert["text"]).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _poster(sink: str, sinks: AlertSinks) -> BoundedPoster:
    if sink == "slack":
        return BoundedPoster(
            urllib.parse.urljoin(sinks.slack_api_url, "chat.postMessage"),
            sinks.timeout_seconds,
            headers={"Authorization": f"Bearer {sinks.slack_token}"},
        )
    return BoundedPoster(sinks.webhook_url, sinks.timeout_seconds)


def _deliver_to(
    sink: str, store: ErrorCatalogStore, sinks: AlertSinks, oldest: pd.Timestamp, now: datetime,
    report: DeliveryReport,
) -> None:  # fmt: skip
    pending = store.undelivered(sink)
    stale = pending["raised_at"] < oldest
    store.mark_delivered(pending.loc[stale, "alert_id"], sink, now, outcome="expired")
    report.expired[sink] = int(stale.sum())
    delivered: list[int] = []
    alert_id = None
    started = time.monotonic()
    try:
        with _poster(sink, sinks) as poster:
            for alert in pending[~stale].to_dict(orient="records"):
                if time.monotonic() - started > sinks.delivery_budget_seconds:
                    report.deferred[sink] = int((~stale).sum()) - len(delivered)
                    break
                alert_id = alert["alert_id"]
                if sink == "slack":
                    text = _slack_text(alert)
                    _, answer = poster.post_json({"channel": sinks.slack_channel, "text": text})
                    _check_slack_answer(answer)
                else:
                    poster.post_json(group_alert_payload(alert))
                delivered.append(alert_id)
    except DeliveryFailed as error:
        report.failed[sink] = [f"alert {alert_id}: {error}"]
    finally:
        store.mark_delivered(delivered, sink, datetime.now(UTC))
    report.delivered[sink] = len(delivered)


def deliver_group_alerts(
    store: ErrorCatalogStore, sinks: AlertSinks, now: datetime | None = None
) -> DeliveryReport:
    """Send every group alert a configured sink has not received yet, and record what was sent: one
    run delivers to a sink at a time (a lease, as for the duration alerts); a sink that fails is not
    tried again this round; a round stops starting deliveries after `delivery_budget_seconds`."""
    report = DeliveryReport()
    now = now or datetime.now(UTC)
    oldest = pd.Timestamp(now - timedelta(hours=sinks.max_alert_age_hours))
    holder = uuid.uuid4().hex
    lease = timedelta(seconds=sinks.delivery_budget_seconds + 2 * sinks.timeout_seconds + 30)
    for sink in sinks.sink_names():
        claimed_at = datetime.now(UTC)
        if not store.claim_sink(sink, holder, claimed_at, claimed_at + lease):
            report.busy.append(sink)
            continue
        try:
            _deliver_to(sink, store, sinks, oldest, now, report)
        finally:
            store.release_sink(sink, holder)
    return report
