"""What an alert about a long-running task says, to a person (text) and to a program (JSON)."""

from collections.abc import Mapping

import pandas as pd

from faultline.redaction import redact_secrets


def format_duration(seconds: float) -> str:
    """`95` -> `1m 35s`, `7380` -> `2h 3m`: precise enough to act on, short enough to read."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def _timestamp(value: object) -> str:
    return pd.Timestamp(value).tz_convert("UTC").strftime("%Y-%m-%d %H:%M UTC")


def _one_line(text: str) -> str:
    printable = "".join(character if character.isprintable() else " " for character in text)
    return " ".join(printable.split())


def alert_text(alert: Mapping[str, object]) -> str:
    """One line: which task, how long it has run, its limit and where the limit comes from."""
    # Task types and run ids are the workflow's data: whatever they hold, the alert stays one line of
    # printable text and no secret leaves in it. Each is redacted before it is quoted (quoting escapes
    # quotes and line breaks, which would hide `password="..."` from the rules), the line once more.
    task_type, run_id = (_one_line(redact_secrets(str(alert[key]))) for key in ("task_type", "run_id"))
    text = (
        f"Task {task_type!r} (run {run_id}) has been running for "
        f"{format_duration(float(alert['elapsed_s']))}, past its limit of "
        f"{format_duration(float(alert['upper_limit_s']))} (mean {format_duration(float(alert['mean_s']))} "
        f"over {int(alert['n_runs'])} successful runs); started {_timestamp(alert['started_at'])}."
    )
    return redact_secrets(_one_line(text))


def slack_text(alert: Mapping[str, object]) -> str:
    """The alert's text as Slack shows it literally: `&`, `<` and `>` escaped, so a task named
    `<!channel>` or `<https://x|click>` pings no one and links nowhere (Slack's formatting rules)."""
    return alert_text(alert).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def alert_payload(alert: Mapping[str, object]) -> dict[str, object]:
    """The alert as JSON for a webhook: every figure, timestamps in ISO 8601, and the text."""
    return {
        "alert_id": int(alert["alert_id"]),
        "task_type": redact_secrets(str(alert["task_type"])),
        "run_id": redact_secrets(str(alert["run_id"])),
        "started_at": pd.Timestamp(alert["started_at"]).isoformat(),
        "raised_at": pd.Timestamp(alert["raised_at"]).isoformat(),
        "elapsed_s": float(alert["elapsed_s"]),
        "upper_limit_s": float(alert["upper_limit_s"]),
        "mean_s": float(alert["mean_s"]),
        "n_runs": int(alert["n_runs"]),
        "text": alert_text(alert),
    }
