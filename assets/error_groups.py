"""Error groups across days: the day's clusters recorded in the catalog, each matched to the group it
belongs to, and the day's report of what changed (new, escalating, regressed, resolved groups), every
group with its state, first seen and trend; alerts on groups that turn new or escalating.
"""

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
from pydantic import Field

from assets.error_clusters import GROUP
from assets.settings import DEFAULT_DAILY_PARTITIONS
from faultline.catalog import (
    DEFAULT_BASELINE_DAYS,
    DEFAULT_ESCALATION_MIN_EVENTS,
    DEFAULT_ESCALATION_MIN_RATIO,
    DEFAULT_ESCALATION_P_VALUE,
    DEFAULT_HINT_WEIGHT,
    DEFAULT_MATCH_THRESHOLD,
    DEFAULT_MEMORY_DAYS,
    DEFAULT_RESOLVED_AFTER_DAYS,
    DEFAULT_SIGNATURE_TEMPLATES,
    DEFAULT_TREND_DAYS,
    CatalogSettings,
    day_clusters,
)
from faultline.report import (
    ClusteredEvents,
    ClusterReport,
    change_lines,
    changes_markdown,
    group_alerts,
    group_report_markdown,
    groups_of_day,
    table_columns,
    table_records,
)
from resources.alert_sinks import AlertSinks
from resources.error_catalog import ErrorCatalogStore
from resources.error_group_alerts import deliver_group_alerts
from resources.report_store import ReportStore


class ErrorGroupsConfig(dg.Config):
    match_threshold: float = Field(
        default=DEFAULT_MATCH_THRESHOLD,
        description="A cluster joins the known group it scores highest with when the score reaches this, "
        "else it founds a group. Score: half the weighted Jaccard of the template shares, half whether "
        "the hint is the same (the Jaccard alone when either has no hint).",
    )
    hint_weight: float = Field(default=DEFAULT_HINT_WEIGHT, description="The hint's part of the score.")
    memory_days: int = Field(
        default=DEFAULT_MEMORY_DAYS, description="A group's signature: its last this many days seen."
    )
    signature_templates: int = Field(
        default=DEFAULT_SIGNATURE_TEMPLATES, description="A cluster's most frequent templates kept."
    )
    resolved_after_days: int = Field(
        default=DEFAULT_RESOLVED_AFTER_DAYS,
        description="A group not seen on this many recorded days in a row is resolved.",
    )
    baseline_days: int = Field(
        default=DEFAULT_BASELINE_DAYS, description="Calendar days before a day that make a group's level."
    )
    escalation_p_value: float = Field(
        default=DEFAULT_ESCALATION_P_VALUE,
        description="Escalating only when the one-sided conditional binomial test of today's rate against "
        "the baseline's (two Poisson rates) gives a p-value below this.",
    )
    escalation_min_ratio: float = Field(
        default=DEFAULT_ESCALATION_MIN_RATIO,
        description="Escalating only at this many times the events the baseline's share gives today.",
    )
    escalation_min_events: int = Field(
        default=DEFAULT_ESCALATION_MIN_EVENTS, description="Escalating only with at least this many events."
    )
    trend_days: int = Field(default=DEFAULT_TREND_DAYS, description="Recorded days a group's trend shows.")
    alerts: bool = Field(default=True, description="Raise alerts on groups that change to `alert_states`.")
    alert_states: list[str] = Field(default=["new", "escalating"], description="States alerted on.")
    alert_max_age_days: float = Field(
        default=2.0,
        description="A day that ended longer ago than this (a backfill) raises no alerts.",
    )

    def catalog_settings(self) -> CatalogSettings:
        return CatalogSettings(**{name: getattr(self, name) for name in CatalogSettings.__dataclass_fields__})


@dg.asset(partitions_def=DEFAULT_DAILY_PARTITIONS, group_name=GROUP)
def error_groups(
    context: dg.AssetExecutionContext,
    config: ErrorGroupsConfig,
    error_clusters: ClusteredEvents,
    error_cluster_report: ClusterReport,
    error_catalog: ErrorCatalogStore,
    report_store: ReportStore,
    alert_sinks: AlertSinks,
) -> dg.MaterializeResult:
    """The day's groups across days, what changed first: each with its stable id, state, first seen
    and trend (the catalog in faultline's database holds every day)."""
    day = context.partition_key
    settings = config.catalog_settings()
    clusters = error_cluster_report.groups
    labels = dict(zip(clusters["cluster_id"].astype(int), clusters["label"], strict=True))
    recorded = day_clusters(
        day, error_clusters.report_rows, error_cluster_report.n_events, labels, settings.signature_templates
    )
    # The report reads the trend's days, and the day before to tell the catalog's first day (no alerts).
    states = error_catalog.record_day(recorded, settings, recent_days=max(config.trend_days, 2))
    markdown = group_report_markdown(states, day, f"Deployment error groups on {day}", config.trend_days)
    path = report_store.write_text(f"error_groups_{day}.md", markdown)
    table = groups_of_day(states, day, config.trend_days)
    report_store.write_text(
        f"error_groups_{day}.json",
        json.dumps(
            {"day": day, "changes": change_lines(states, day), "groups": table.to_dict(orient="records")},
            indent=2,
        ),
    )
    today = states[states["day"] == day]
    changed = today[today["changed"]]
    n_new_alerts = 0
    day_ended = datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(days=1)
    if config.alerts and datetime.now(UTC) - day_ended <= timedelta(days=config.alert_max_age_days):
        new_alerts = error_catalog.record_alerts(
            group_alerts(states, day, tuple(config.alert_states)), datetime.now(UTC)
        )
        n_new_alerts = len(new_alerts)
        for text in new_alerts["text"]:
            context.log.warning(text)
        delivery = deliver_group_alerts(error_catalog, alert_sinks)
        for sink, failures in delivery.failed.items():
            context.log.warning(f"error-group alerts to {sink} failed, kept for the next run: {failures[0]}")
    return dg.MaterializeResult(
        metadata={
            "day": day,
            # What changed first: the lines the report leads with.
            "changes": dg.MetadataValue.md(changes_markdown(states, day)),
            "groups": dg.MetadataValue.table(
                records=[dg.TableRecord(record) for record in table_records(table, digits=2)],
                schema=dg.TableSchema(columns=[dg.TableColumn(n, k) for n, k in table_columns(table)]),
            ),
            "n_groups": int((today["n_events"] > 0).sum()),
            "n_new": int((changed["state"] == "new").sum()),
            "n_escalating": int((changed["state"] == "escalating").sum()),
            "n_regressed": int((changed["state"] == "regressed").sum()),
            "n_resolved": int((changed["state"] == "resolved").sum()),
            "alerts_raised": n_new_alerts,
            "report_file": dg.MetadataValue.path(str(path)),
        },
    )
