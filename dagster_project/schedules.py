"""Schedules: the daily jobs run once the day is over, on the day just finished; the backtest weekly."""

import dagster as dg


def error_clusters_schedules(error_clusters_job) -> list[dg.ScheduleDefinition]:
    # 01:00 UTC leaves late batches of the previous day an hour to land in the store.
    return [
        dg.build_schedule_from_partitioned_job(
            error_clusters_job, hour_of_day=1, default_status=dg.DefaultScheduleStatus.RUNNING
        )
    ]


def task_durations_schedules(
    task_duration_baselines_job, duration_alert_backtest_job
) -> list[dg.ScheduleDefinition]:
    return [
        # Right after midnight: the sensor checks against limits that include yesterday's runs.
        dg.build_schedule_from_partitioned_job(
            task_duration_baselines_job, minute_of_hour=10, default_status=dg.DefaultScheduleStatus.RUNNING
        ),
        # Mondays at 02:00 UTC, after both daily jobs: a week more of runs to judge the estimators on.
        dg.ScheduleDefinition(
            name="duration_alert_backtest_weekly_schedule",
            job=duration_alert_backtest_job,
            cron_schedule="0 2 * * 1",
            execution_timezone="UTC",
            default_status=dg.DefaultScheduleStatus.RUNNING,
        ),
    ]
