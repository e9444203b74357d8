"""Sensors: every 10 minutes, each running task past its learned limit raises one alert, and the
tasks over their limit are recorded as the `tasks_within_their_limit` check of the limits' asset."""

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import dagster as dg

from assets.task_durations import (
    OVER_LIMIT_CHECK,
    QUEUE_CHECK,
    WATCHED_ASSET_CHECK,
    over_limit_findings,
    queue_findings,
    task_duration_baselines,
    watched_asset_findings,
)
from faultline.alerting import alert_text, format_duration, over_limit_summary, scan_counts
from faultline.durations import CHECK_INTERVAL_S, find_overdue_tasks
from faultline.report import markdown_table
from resources.alert_sinks import AlertSinks, deliver_pending_alerts
from resources.alert_store import QUEUED, AlertStore
from resources.sources import alert_fields
from resources.workflow import WorkflowService


def _utc_now() -> datetime:
    return datetime.now(UTC)


def build_long_running_tasks_sensor(
    minimum_interval_seconds: int = CHECK_INTERVAL_S,
    clock: Callable[[], datetime] = _utc_now,
    watched_assets: Sequence[str] = (),
) -> dg.SensorDefinition:
    """The sensor, ticking every `minimum_interval_seconds` (Amperity's 10 minutes by default);
    `clock` tells it the time (tests pass a fixed one). Each of `watched_assets` (Dagster assets whose
    check `within_its_runtime_limit` the code location defines) gets that check evaluated on a tick
    where a step materializing it runs, and on the next after it failed (the sensor's cursor keeps
    which failed), so a step that ran over and ended leaves it passed.

    A task shorter than the interval may start and end between two ticks and never be checked; the
    seed argues that is fine, since a short task running long costs little.
    """

    @dg.sensor(
        name="long_running_tasks",
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Flags running tasks past the upper limit learned by task_duration_baselines.",
    )
    def long_running_tasks(
        context: dg.SensorEvaluationContext,
        workflow: WorkflowService,
        alert_store: AlertStore,
        alert_sinks: AlertSinks,
    ):
        now = clock()
        as_of, baselines = alert_store.latest_baselines()
        running, unreadable = workflow.running_tasks(now)
        scan = find_overdue_tasks(running, baselines, now)
        # The store keeps one alert per run: a later tick, or a restarted daemon, finds it there.
        # Each alert carries what its source tells of the run (Airflow: dag, task, attempt, link).
        new_alerts = alert_store.record_alerts(alert_fields(workflow, scan.overdue), raised_at=now)
        for alert in new_alerts.to_dict(orient="records"):
            context.log.warning(alert_text(alert))
        # Tasks waiting queued past their queue limit, where the source records queue times: an alert
        # of their own, once per attempt, delivered with the others.
        # A failing queue check (a misnamed column, an outage) must not keep the running alerts from
        # their delivery: it fails the tick after it.
        check_events: list[dg.AssetCheckEvaluation] = []
        queue_said = ""
        queue_error: Exception | None = None
        try:
            queue = queue_findings(workflow, alert_store, now)
        except Exception as error:  # noqa: BLE001 - raised again once the alerts are delivered
            queue, queue_error = None, error
            context.log.error(
                f"The queue check failed ({type(error).__name__}); delivering the alerts first."
            )
        if queue is not None:
            queue_scan, queue_check = queue
            new_queued = alert_store.record_alerts(
                alert_fields(workflow, queue_scan.overdue), raised_at=now, phase=QUEUED
            )
            for alert in new_queued.to_dict(orient="records"):
                context.log.warning(alert_text(alert))
            queue_check["metadata"]["new_alerts"] = len(new_queued)
            check_events.append(
                dg.AssetCheckEvaluation(
                    asset_key=task_duration_baselines.key, check_name=QUEUE_CHECK, **queue_check
                )
            )
            if len(queue_scan.overdue):
                queue_said = (
                    f" Queued past their queue limit: {len(queue_scan.overdue)}, {len(new_queued)} newly "
                    f"alerted ({over_limit_summary(queue_scan.overdue)})."
                )
        delivery = deliver_pending_alerts(alert_store, alert_sinks, now)
        for sink, expired in delivery.expired.items():
            if expired:
                context.log.info(
                    f"Sink {sink}: {expired} alerts older than the delivery limit expired unsent."
                )
        for sink in delivery.busy:
            context.log.info(f"Sink {sink}: another tick is delivering to it; this tick leaves it alone.")
        for sink, deferred in delivery.deferred.items():
            context.log.warning(
                f"Sink {sink}: {deferred} alerts left for the next tick (the tick's delivery time ran out)."
            )
        for sink, failures in delivery.failed.items():
            context.log.warning(
                f"Sink {sink} failed ({'; '.join(failures)}); its alerts are retried next tick."
            )

        if queue_error is not None:
            raise queue_error
        watched_events, failed = _watched_asset_evaluations(running, scan, watched_assets, context.cursor)
        check_events += watched_events  # the queue check's and the watched assets'
        cursor = json.dumps(failed) if watched_assets else None
        counts = scan_counts(scan.n_running, scan.n_checked, scan.n_without_baseline, len(unreadable))
        if as_of is None:
            said = f"No new task over its limit ({counts}; no limits learned yet).{queue_said}"
            if not check_events:
                return dg.SkipReason(said)
            return dg.SensorResult(skip_reason=said, asset_events=check_events, cursor=cursor)
        limits = f"limits as of {as_of:%Y-%m-%d}"
        over = scan.overdue
        # Each tick that checks leaves its findings on the limits' asset, as the evaluation of its
        # check: the tasks over their limit now, new or alerted before, and their count, which the
        # UI plots across ticks. Its one-line result names the first of them.
        check = dg.AssetCheckEvaluation(
            asset_key=task_duration_baselines.key,
            check_name=OVER_LIMIT_CHECK,
            **over_limit_findings(scan, as_of, len(unreadable), n_new_alerts=len(new_alerts)),
        )
        named = f" Over their limit now: {over_limit_summary(over)}." if len(over) else ""
        if new_alerts.empty:
            still_over = f", {len(over)} still over their limit, already alerted" if len(over) else ""
            return dg.SensorResult(
                skip_reason=(
                    f"No new task over its limit ({counts}{still_over}; {limits}).{named}{queue_said}"
                ),
                asset_events=[check, *check_events],
                cursor=cursor,
            )
        shown = new_alerts.assign(
            elapsed=new_alerts["elapsed_s"].map(format_duration),
            limit=new_alerts["upper_limit_s"].map(format_duration),
        )[["task_type", "run_id", "started_at", "elapsed", "limit"]]
        summary = f"{len(new_alerts)} running tasks past their limit ({counts}; {limits})."
        return dg.SensorResult(
            # A tick that requests no run is "skipped" to Dagster, whose own message for it would be
            # "Sensor function returned an empty result"; the tick history says what it did instead.
            skip_reason=f"Alerted: {summary}{named}{queue_said}",
            asset_events=[
                # The alerts this tick raised, in the asset's event history.
                dg.AssetObservation(
                    asset_key=task_duration_baselines.key,
                    description=summary,
                    metadata={
                        "new_alerts": len(new_alerts),
                        "running": scan.n_running,
                        "checked": scan.n_checked,
                        "without_baseline": scan.n_without_baseline,
                        "alerts": dg.MetadataValue.md(markdown_table(shown)),
                    },
                ),
                check,
                *check_events,
            ],
            cursor=cursor,
        )

    return long_running_tasks


def _watched_asset_evaluations(
    running, scan, watched_assets: Sequence[str], cursor: str | None
) -> tuple[list[dg.AssetCheckEvaluation], list[str]]:
    """The evaluations of the watched assets' check this tick (those with a step running, those that
    failed on the last tick), and the assets that fail now."""
    if not watched_assets:
        return [], []
    failed_before = set(json.loads(cursor)) if cursor else set()
    events, failed = [], []
    for key, (n_running, found) in watched_asset_findings(running, scan, list(watched_assets)).items():
        if n_running or key in failed_before:
            events.append(
                dg.AssetCheckEvaluation(
                    asset_key=dg.AssetKey.from_user_string(key), check_name=WATCHED_ASSET_CHECK, **found
                )
            )
        if not found["passed"]:
            failed.append(key)
    return events, failed


def build_duration_limit_chart_sensor(
    chart_job, minimum_interval_seconds: int = CHECK_INTERVAL_S
) -> dg.SensorDefinition:
    """Runs `chart_job` (the flagged task types against their limits) once per batch of new alerts:
    its cursor is the newest alert id it has drawn, so a tick with no new alert requests nothing."""

    @dg.sensor(
        name="duration_limit_chart_on_new_alerts",
        job=chart_job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Draws the task types flagged by new alerts against their runs and limits.",
    )
    def duration_limit_chart_on_new_alerts(context: dg.SensorEvaluationContext, alert_store: AlertStore):
        newest = alert_store.newest_alert_id()
        drawn = int(context.cursor) if context.cursor else 0
        if newest is None or newest <= drawn:
            return dg.SkipReason(f"No alert since the last chart (newest alert id: {newest}).")
        request = dg.RunRequest(run_key=f"alerts-to-{newest}")
        return dg.SensorResult(run_requests=[request], cursor=str(newest))

    return duration_limit_chart_on_new_alerts


# At the seed's cadence; the code location builds its own from the deployment's settings.
long_running_tasks_sensor = build_long_running_tasks_sensor()
