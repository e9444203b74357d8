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
    """A time as `2026-11-22 05:00 UTC`; a time without a zone is taken as UTC (as a scan gives it)."""
    timestamp = pd.Timestamp(value)
    timestamp = timestamp.tz_localize("UTC") if timestamp.tzinfo is None else timestamp.tz_convert("UTC")
    return timestamp.strftime("%Y-%m-%d %H:%M UTC")


def _one_line(text: str) -> str:
    printable = "".join(character if character.isprintable() else " " for character in text)
    return " ".join(printable.split())


def _quoted_ids(alert: Mapping[str, object]) -> tuple[str, str]:
    """The task type and run id as an alert quotes them: redacted, one line of printable text."""
    # Task types and run ids are the workflow's data: whatever they hold, they are shown as one line of
    # printable text and no secret leaves in them. Each is redacted before it is quoted (quoting escapes
    # quotes and line breaks, which would hide `password="..."` from the rules).
    return tuple(_one_line(redact_secrets(str(alert[key]))) for key in ("task_type", "run_id"))


def _given(alert: Mapping[str, object], key: str) -> object | None:
    """A source field of the alert, None where the source gave none."""
    value = alert.get(key)
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else value


def _text(value: object) -> str:
    return _one_line(redact_secrets(str(value)))


def _which_task(alert: Mapping[str, object]) -> str:
    """`Task 'group.load' of DAG 'etl' (run 'manual__...', map index 1, try 2)` where the source gives
    its fields, each part quoted on its own (Airflow's ids hold dots: joined, they would read as
    other ids); else `Task 'etl.load' (run r-7)`."""
    if _given(alert, "dagster_job") is not None:
        # `Step 'orders' (asset 'shop/orders') of job 'refresh' (run '...')`, or `Job 'refresh' (run '...')`.
        run = f"(run {_text(alert.get('dagster_run_id') or alert['run_id'])!r})"
        job = f"job {_text(alert['dagster_job'])!r}"
        if _given(alert, "dagster_step") is None:
            return f"{job[0].upper()}{job[1:]} {run}"
        asset = f" (asset {_text(alert['dagster_asset'])!r})" if _given(alert, "dagster_asset") else ""
        return f"Step {_text(alert['dagster_step'])!r}{asset} of {job} {run}"
    if _given(alert, "dag_id") is None or _given(alert, "task_id") is None:
        task_type, run_id = _quoted_ids(alert)
        return f"Task {task_type!r} (run {run_id})"
    attempt = [f"run {_text(alert['dag_run_id'])!r}"] if _given(alert, "dag_run_id") is not None else []
    map_index = _given(alert, "map_index")
    if map_index is not None and int(map_index) >= 0:
        attempt.append(f"map index {int(map_index)}")
    if _given(alert, "try_number") is not None:
        attempt.append(f"try {int(alert['try_number'])}")
    return f"Task {_text(alert['task_id'])!r} of DAG {_text(alert['dag_id'])!r} ({', '.join(attempt)})"


def _borrowed(alert: Mapping[str, object]) -> str:
    """` of 'asset:orders'` where the task borrowed that task type's limit, having none of its own."""
    limit_from = _given(alert, "limit_from")
    return f" of {_text(limit_from)!r}, its own limit not yet learned" if limit_from is not None else ""


def alert_text(alert: Mapping[str, object]) -> str:
    """One line: which task, how long it has run, its limit and where the limit comes from, and a
    link to the task in its source's UI when there is one."""
    # The line is redacted once more, as a whole.
    link = _given(alert, "link")
    if alert.get("phase") == "queued":
        # A queue alert's "started_at" is when the task was queued (resources/queue_waits.py).
        what = (
            f"has been queued for {format_duration(float(alert['elapsed_s']))} without starting, past "
            f"its queue limit of {format_duration(float(alert['upper_limit_s']))} (mean wait "
            f"{format_duration(float(alert['mean_s']))} over {int(alert['n_runs'])} starts); queued "
            f"{_timestamp(alert['started_at'])}."
        )
    else:
        what = (
            f"has been running for {format_duration(float(alert['elapsed_s']))}, past its limit of "
            f"{format_duration(float(alert['upper_limit_s']))} "
            f"(mean {format_duration(float(alert['mean_s']))} over {int(alert['n_runs'])} successful runs"
            f"{_borrowed(alert)}); "
            f"started {_timestamp(alert['started_at'])}."
        )
    text = f"{_which_task(alert)} {what}" + (f" {_text(link)}" if link is not None else "")
    return redact_secrets(_one_line(text))


def over_limit_rows(overdue: pd.DataFrame) -> list[dict[str, object]]:
    """The tasks past their limit (`find_overdue_tasks`' `overdue`), one plain row each for a table a
    person reads: the task type and run id as alerts show them, the times as alerts say them."""
    rows = []
    for alert in overdue.to_dict(orient="records"):
        task_type, run_id = _quoted_ids(alert)
        rows.append(
            {
                "task_type": task_type,
                "run_id": run_id,
                "started_at": _timestamp(alert["started_at"]),
                "elapsed": format_duration(float(alert["elapsed_s"])),
                "limit": format_duration(float(alert["upper_limit_s"])),
                "mean": format_duration(float(alert["mean_s"])),
                "runs": int(alert["n_runs"]),
            }
        )
    return rows


def scan_counts(
    n_running: int, n_checked: int, n_without_baseline: int, n_unreadable: int, phase: str = "running"
) -> str:
    """What a check of the running (or queued) tasks looked at: `4 running, 3 checked, 1 without
    baseline`, and how many rows could not be read, if any."""
    counts = f"{n_running} {phase}, {n_checked} checked, {n_without_baseline} without baseline"
    return counts + (f", {n_unreadable} unreadable" if n_unreadable else "")


def over_limit_summary(overdue: pd.DataFrame, n_named: int = 3) -> str:
    """The first `n_named` tasks past their limit named on one line, then how many more: what a
    sensor tick's one-line result says (`'etl.orders' run r-7 1h 0m, limit 3m 26s; ...; and 4 more`)."""
    named = [
        f"{task_type!r} run {run_id} {format_duration(float(alert['elapsed_s']))}, "
        f"limit {format_duration(float(alert['upper_limit_s']))}"
        for alert in overdue.head(n_named).to_dict(orient="records")
        for task_type, run_id in [_quoted_ids(alert)]
    ]
    more = len(overdue) - len(named)
    return redact_secrets(_one_line("; ".join(named) + (f"; and {more} more" if more > 0 else "")))


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
        # "running" (past its duration limit) or "queued" (past its queue limit; started_at is then
        # when it was queued).
        "phase": str(alert.get("phase") or "running"),
        # The task type whose limit the task borrowed (its own not yet learned), null for its own.
        "limit_from": _payload_field(alert, "limit_from"),
        # What the source tells of the run, each part apart (null where it tells nothing).
        **{key: _payload_field(alert, key) for key in SOURCE_FIELD_NAMES},
        "text": alert_text(alert),
    }


# The source fields an alert may carry (resources/alert_store.py SOURCE_FIELDS).
SOURCE_FIELD_NAMES = (
    "dag_id", "task_id", "dag_run_id", "map_index", "try_number", "link",
    "dagster_job", "dagster_step", "dagster_asset", "dagster_run_id",
)  # fmt: skip


def _payload_field(alert: Mapping[str, object], key: str) -> object | None:
    value = _given(alert, key)
    if value is None:
        return None
    return redact_secrets(str(value)) if isinstance(value, str) else int(value)
