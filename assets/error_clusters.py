"""Why do deployments fail: the day's error messages, from a dump of the store to a cluster report.

Qovery's pipeline as assets: dump -> flattened events -> cleaned corpus -> vectors -> clusters ->
report. Only the dump reads the store; everything after it works from the dump. The dump and the
flattened events are kept in parts (`PartStore`), which the next steps read a part at a time on
every core, so a day of a million events never has to fit in memory.
"""

import json

import dagster as dg
from pydantic import Field, model_validator

from assets.settings import (
    DEFAULT_DAILY_PARTITIONS,
    DEFAULT_KEEP_DUMP_DAYS,
    DEFAULT_KEEP_FLATTENED_DAYS,
    retried_on_outage,
)
from faultline.cleaning import PROFILES, Corpus, profile_named
from faultline.clustering import (
    DEFAULT_CENTER_VECTORS,
    DEFAULT_DM,
    DEFAULT_EPOCHS,
    DEFAULT_EPS,
    DEFAULT_MAX_TEMPLATES,
    DEFAULT_MAX_WORDS,
    DEFAULT_MERGE_CLUSTERS_SHARING_HINT,
    DEFAULT_METRIC,
    DEFAULT_MIN_COUNT,
    DEFAULT_MIN_SAMPLES,
    DEFAULT_SEED,
    DEFAULT_VECTOR_SIZE,
    DEFAULT_WINDOW,
    NOISE,
    DocumentVectors,
)
from faultline.event_shape import SHAPES, EventShape, shape_from_config
from faultline.flatten import DEFAULT_MAX_MESSAGE_CHARS, EVENT_COLUMNS
from faultline.pipeline import (
    DEFAULT_ROWS_PER_PART,
    clean_corpus,
    cluster_corpus,
    flatten_dump,
    report_clusters,
    vectorize_corpus,
)
from faultline.report import (
    ClusteredEvents,
    ClusterReport,
    markdown_table,
    report_document,
    report_markdown,
    report_table,
    table_columns,
    table_records,
)
from faultline.templates import DEFAULT_MAX_CONSTANT_VALUES, DEFAULT_SIMILARITY
from resources.error_source import DUMP_COLUMNS, ErrorEventSource
from resources.error_sources import ErrorEventFormat
from resources.frame_parts import FrameParts
from resources.part_store import PartStore
from resources.report_store import ReportStore

GROUP = "error_clusters"


class DumpConfig(dg.Config):
    rows_per_part: int = Field(
        default=DEFAULT_ROWS_PER_PART,
        description="Store rows (batches) per part of the dump; each later step works a part at a time.",
    )
    keep_days: float = Field(
        default=DEFAULT_KEEP_DUMP_DAYS,
        description="Days a dump's parts (unredacted payloads) are kept after they are written; any "
        "day's older ones are removed when the dump is next written.",
    )


class FlattenConfig(dg.Config):
    # Where the payloads hold their events' fields. None: the deployment's, the `error_format` resource
    # (FAULTLINE_ERROR_*, else the source's own: Qovery's batches for the default table).
    layout: str | None = Field(
        default=None,
        description=f"How a row holds its events: {' or '.join(SHAPES)} (batched: a JSON array of events "
        "per row; event: one JSON object per row). Unset: the deployment's (FAULTLINE_ERROR_LAYOUT).",
    )
    message_field: str | None = Field(
        default=None,
        description="Where an event's message is: a field name or a dotted path (log.text). Unset: the "
        "deployment's (FAULTLINE_ERROR_MESSAGE_FIELD).",
    )
    state_field: str | None = Field(
        default=None,
        description="Where an event's state is (a name or dotted path); empty: events have no state, and "
        "every_event_is_error must be set. Unset: the deployment's (FAULTLINE_ERROR_STATE_FIELD).",
    )
    scope_field: str | None = Field(
        default=None,
        description="Where an event's scope is (a name or dotted path); empty: none. Unset: the "
        "deployment's (FAULTLINE_ERROR_SCOPE_FIELD).",
    )
    error_states: list[str] | None = Field(
        default=None,
        description="Event states that count as errors (a number or boolean state by its JSON text, 500). "
        "Unset: the deployment's (FAULTLINE_ERROR_STATES; Qovery's error states by default).",
    )
    every_event_is_error: bool | None = Field(
        default=None,
        description="Every event read is an error, whatever its state: error_states is ignored. Unset: "
        "true when error_states is unset and the deployment's says so (FAULTLINE_ERROR_STATES=*).",
    )
    max_message_chars: int = Field(
        default=DEFAULT_MAX_MESSAGE_CHARS, description="Longer messages are quarantined, not analysed."
    )
    max_quarantine_share: float = Field(
        default=0.05, description="Warn when more than this share of the day's events is quarantined."
    )
    workers: int = Field(default=0, description="Processes flattening parts at once; 0: one per core.")
    keep_days: float = Field(
        default=DEFAULT_KEEP_FLATTENED_DAYS,
        description="Days the flattened events' parts (redacted) are kept after they are written; any "
        "day's older ones are removed when the flattened events are next written.",
    )

    @model_validator(mode="after")
    def _shape_is_readable(self) -> "FlattenConfig":
        # What the config decides alone is checked where the run's config is read, naming the setting
        # (against a deployment that lets every event be an error, so that only the config can be at
        # fault); the rest once it meets the deployment's format, in the step (event_shape).
        event_shape(self, ErrorEventFormat(error_states=None))
        return self


def event_shape(config: FlattenConfig, deployment: ErrorEventFormat) -> EventShape:
    """The deployment's format with what the step's Config sets in its place, or a ValueError naming the
    setting. Listing error_states in the Config means they, not "every event", tell the errors."""
    if config.every_event_is_error is not None:
        every_event_is_error = config.every_event_is_error
    elif config.error_states is not None:
        every_event_is_error = False
    else:
        every_event_is_error = deployment.error_states is None
    return shape_from_config(
        config.layout if config.layout is not None else deployment.layout,
        config.message_field if config.message_field is not None else deployment.message_field,
        config.state_field if config.state_field is not None else deployment.state_field,
        config.scope_field if config.scope_field is not None else deployment.scope_field,
        config.error_states if config.error_states is not None else deployment.error_states or [],
        every_event_is_error,
    )


class CleaningConfig(dg.Config):
    profile: str | None = Field(
        default=None,
        description=f"The platform's rules for its messages, one of {', '.join(PROFILES)}: qovery strips "
        "Qovery's framing and reads its hints; generic keeps messages as written (faultline/cleaning.py). "
        "Unset: the deployment's (FAULTLINE_ERROR_PROFILE, else the source's: qovery for the default table).",
    )
    template_similarity: float = Field(
        default=DEFAULT_SIMILARITY,
        description="Messages of one shape matching a template in this share of their tokens join it "
        "(the differing tokens become wildcards); 1.0 merges nothing.",
    )
    max_constant_values: int = Field(
        default=DEFAULT_MAX_CONSTANT_VALUES,
        description="A template position whose words take at most this many values splits the template "
        "(an enumeration like start/stop), more makes it a variable; 0 splits nothing.",
    )
    workers: int = Field(default=0, description="Processes reading parts at once; 0: one per core.")

    @model_validator(mode="after")
    def _profile_exists(self) -> "CleaningConfig":
        if self.profile is not None:
            profile_named(self.profile)
        return self


class Doc2VecConfig(dg.Config):
    # The defaults, and the seed's values they come from, are in faultline/clustering.py.
    vector_size: int = DEFAULT_VECTOR_SIZE
    window: int = DEFAULT_WINDOW
    min_count: int = DEFAULT_MIN_COUNT
    epochs: int = DEFAULT_EPOCHS
    dm: int = Field(
        default=DEFAULT_DM, description="1: distributed memory (gensim's default, the seed's); 0: DBOW."
    )
    seed: int = Field(default=DEFAULT_SEED, description="Fixed so the same input gives the same vectors.")
    max_templates: int = Field(
        default=DEFAULT_MAX_TEMPLATES,
        description="Distinct cleaned templates vectorized and clustered, at most: the most frequent; the "
        "events of the others are counted in the report as not vectorized (cluster -3).",
    )
    max_words: int = Field(
        default=DEFAULT_MAX_WORDS,
        description="Words of the templates vectorized, at most, which Doc2Vec trains on each epoch (each "
        "template's first 1,000): the most frequent templates that fit; the others as past max_templates.",
    )


class DBSCANConfig(dg.Config):
    # The defaults are in faultline/clustering.py, beside the seed's values they depart from.
    eps: float = Field(
        default=DEFAULT_EPS,
        description="Cosine distance within which two templates' vectors are neighbours (the seed: 0.2).",
    )
    min_samples: int = Field(
        default=DEFAULT_MIN_SAMPLES,
        description="Events (templates weigh their event count) a core point needs; a template seen once "
        "and near no other is noise (the seed: 5).",
    )
    metric: str = DEFAULT_METRIC
    center_vectors: bool = Field(
        default=DEFAULT_CENTER_VECTORS,
        description="Subtract the mean vector before DBSCAN: Doc2Vec's vectors share a common direction "
        "that makes every pair look close under cosine (the seed: False).",
    )
    merge_clusters_sharing_hint: bool = Field(
        default=DEFAULT_MERGE_CLUSTERS_SHARING_HINT,
        description="Merge clusters whose messages carry the same platform hint (the engine's diagnosis).",
    )
    max_noise_share: float = Field(default=0.2, description="Warn when more of the day's errors are noise.")


@dg.asset(
    partitions_def=DEFAULT_DAILY_PARTITIONS,
    group_name=GROUP,
    check_specs=[
        dg.AssetCheckSpec(
            "dump_has_rows",
            asset="deployment_events_dump",
            description="Warns when the events store had no rows for the day: its report would be empty "
            "(the store was not filled, or points elsewhere).",
        )
    ],
)
# No return annotation: with check_specs Dagster would read one as the type of every output.
def deployment_events_dump(
    context: dg.AssetExecutionContext,
    config: DumpConfig,
    event_store: ErrorEventSource,
    part_store: PartStore,
):
    """The day's rows copied out of the error source as they are, so production is read once."""
    window = context.partition_time_window
    # The store may be down or drop the connection: retried, and safe to retry, since a failed read
    # keeps no parts at all and the day's rows are selected again from scratch.
    with retried_on_outage(context, event_store):
        dump = part_store.write(
            "deployment_events_dump",
            context.partition_key,
            event_store.iter_batches(window.start, window.end, config.rows_per_part),
            DUMP_COLUMNS,
            keep_days=config.keep_days,
        )
    # What the source read and left out of the day, counted (files: other days' records, blank lines,
    # records without a readable time, the first of which are named by file and line).
    left_out = event_store.last_read_counts()
    without_time = left_out.get("records_without_time", 0)
    examples = event_store.records_without_time_examples() if without_time else []
    told = (
        f" {without_time:,} records had no readable time and are in no day (the first at "
        f"{', '.join(examples)})."
        if without_time
        else ""
    )
    return dg.MaterializeResult(
        value=dump,
        metadata={
            "dagster/row_count": dump.n_rows,
            "parts": dump.n_parts,
            "source": type(event_store).__name__,
            **({"left_out": dg.MetadataValue.json(left_out)} if left_out else {}),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="dump_has_rows",
                passed=dump.n_rows > 0,
                severity=dg.AssetCheckSeverity.WARN,
                description=(
                    f"The store had {dump.n_rows:,} rows for {context.partition_key}."
                    if dump.n_rows
                    else f"The store had no rows for {context.partition_key}: the report will be empty."
                )
                + told,
                metadata={"rows": dump.n_rows, "min_rows": 1, **left_out},
            )
        ],
    )


@dg.multi_asset(
    partitions_def=DEFAULT_DAILY_PARTITIONS,
    group_name=GROUP,
    outs={
        "flattened_events": dg.AssetOut(description="One row per error event, batches exploded."),
        "event_quarantine": dg.AssetOut(
            description="Rows and events that could not be read, with why: the first 100 of each reason "
            "(the metadata counts them all)."
        ),
    },
    check_specs=[
        dg.AssetCheckSpec(
            "quarantine_share_is_low",
            asset="event_quarantine",
            description="Warns when more of the day's records than `max_quarantine_share` (5%) could not "
            "be read (broken JSON, missing fields, messages too long): the report would leave them out.",
        )
    ],
)
def flatten_events(
    context: dg.AssetExecutionContext,
    config: FlattenConfig,
    deployment_events_dump: FrameParts,
    part_store: PartStore,
    error_format: ErrorEventFormat,
):
    try:
        shape = event_shape(config, error_format)
    except ValueError as error:
        raise dg.Failure(f"flatten_events: the shape of the events cannot be read: {error}") from None
    with part_store.writer(
        "flattened_events", context.partition_key, EVENT_COLUMNS, keep_days=config.keep_days
    ) as writer:
        flattened = flatten_dump(
            deployment_events_dump,
            writer,
            shape.error_states or (),
            config.max_message_chars,
            config.workers,
            layout=shape.layout,
            message_field=shape.message_field,
            state_field=shape.state_field,
            scope_field=shape.scope_field,
            every_event_is_error=shape.error_states is None,
        )
        events = writer.commit()
    quarantine = flattened.quarantine  # a sample: the first records of each reason
    reasons = flattened.quarantined  # every record, by reason
    yield dg.Output(
        events,
        output_name="flattened_events",
        metadata={
            "dagster/row_count": events.n_rows,
            "rows_read": flattened.n_rows,
            "events_read": flattened.n_events_read,
            "non_error_events": flattened.n_non_error_events,
            "quarantined": flattened.n_quarantined,
            "layout": shape.layout,
            "message_field": shape.message_field,
        },
    )
    yield dg.Output(
        quarantine,
        output_name="event_quarantine",
        metadata={
            "dagster/row_count": len(quarantine),
            "quarantined": flattened.n_quarantined,
            "reasons": dg.MetadataValue.json(reasons),
            # markdown_table escapes pipes and line breaks, which excerpts of broken payloads hold.
            "preview": dg.MetadataValue.md(markdown_table(quarantine.head(20))),
        },
    )
    # Whole rows that could not be read hold an unknown number of events: count them as one each.
    units = flattened.n_events_read + flattened.n_rows_quarantined
    share = flattened.n_quarantined / units if units else 0.0
    passed = share <= config.max_quarantine_share
    yield dg.AssetCheckResult(
        check_name="quarantine_share_is_low",
        asset_key="event_quarantine",
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{share:.1%} of the day's records could not be read ({flattened.n_quarantined:,} of "
        f"{units:,}): {'within' if passed else 'above'} the {config.max_quarantine_share:.0%} allowed.",
        metadata={
            "quarantine_share": round(share, 4),
            "max_share": round(config.max_quarantine_share, 4),
            "quarantined": flattened.n_quarantined,
            "records": units,
            "reasons": dg.MetadataValue.json(reasons),
        },
    )


@dg.asset(partitions_def=DEFAULT_DAILY_PARTITIONS, group_name=GROUP)
def cleaned_corpus(
    config: CleaningConfig, flattened_events: FrameParts, error_format: ErrorEventFormat
) -> dg.MaterializeResult[Corpus]:
    """Each error event's variant (its message's template tokens) and hint; per variant its template,
    the cleaned text the vectorizer sees, its count and an example message."""
    profile = config.profile or error_format.profile
    corpus = clean_corpus(
        flattened_events,
        config.template_similarity,
        config.max_constant_values,
        config.workers,
        profile=profile,
    )
    variants = corpus.variants
    with_text = variants[variants["has_text"]]
    return dg.MaterializeResult(
        value=corpus,
        metadata={
            "dagster/row_count": len(corpus.events),
            "profile": profile,
            "variants": len(variants),
            "distinct_cleaned_texts": int(with_text["cleaned"].nunique()),
            "distinct_templates": int(with_text["template"].nunique()),
            "empty_after_cleaning": int(variants.loc[~variants["has_text"], "n_events"].sum()),
        },
    )


@dg.asset(partitions_def=DEFAULT_DAILY_PARTITIONS, group_name=GROUP)
def error_vectors(config: Doc2VecConfig, cleaned_corpus: Corpus) -> dg.MaterializeResult[DocumentVectors]:
    """A Doc2Vec vector per distinct template, with the number of events that carry it."""
    # The Config's fields are vectorize_corpus' parameters, one for one.
    vectors = vectorize_corpus(cleaned_corpus, **config.model_dump())
    return dg.MaterializeResult(
        value=vectors,
        metadata={"distinct_texts": len(vectors.texts), "events": int(vectors.counts.sum())},
    )


@dg.asset(
    partitions_def=DEFAULT_DAILY_PARTITIONS,
    group_name=GROUP,
    check_specs=[
        dg.AssetCheckSpec(
            "noise_share_is_normal",
            asset="error_clusters",
            description="Warns when more of the day's error events than `max_noise_share` (20%) fall in no "
            "cluster: the report's groups would leave much of the day out.",
        )
    ],
)
def error_clusters(config: DBSCANConfig, cleaned_corpus: Corpus, error_vectors: DocumentVectors):
    """Every error event with its cluster (0 is the biggest), noise (-1) or no text (-2), and the
    same by variant with what the report shows of them."""
    clustered = cluster_corpus(
        cleaned_corpus,
        error_vectors,
        config.eps,
        config.min_samples,
        config.metric,
        config.center_vectors,
        config.merge_clusters_sharing_hint,
    )
    events = clustered.events
    # Share of all the day's error events, as in the report, so the UI plots one series under one name.
    n_noise = int((events["cluster_id"] == NOISE).sum())
    noise_share = n_noise / len(events) if len(events) else 0.0
    n_clusters = int(events.loc[events["cluster_id"] >= 0, "cluster_id"].nunique())
    passed = noise_share <= config.max_noise_share
    return dg.MaterializeResult(
        value=clustered,
        metadata={
            "dagster/row_count": len(events),
            "n_clusters": n_clusters,
            "n_dbscan_clusters": clustered.n_dbscan_clusters,
            "noise_share": round(noise_share, 4),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="noise_share_is_normal",
                passed=passed,
                severity=dg.AssetCheckSeverity.WARN,
                description=f"{noise_share:.1%} of the day's error events fell in no cluster "
                f"({n_noise:,} of {len(events):,}): {'within' if passed else 'above'} the "
                f"{config.max_noise_share:.0%} allowed.",
                metadata={
                    "noise_share": round(noise_share, 4),
                    "max_share": round(config.max_noise_share, 4),
                    "noise_events": n_noise,
                    "events": len(events),
                },
            )
        ],
    )


@dg.asset(partitions_def=DEFAULT_DAILY_PARTITIONS, group_name=GROUP)
def error_cluster_report(
    context: dg.AssetExecutionContext, error_clusters: ClusteredEvents, report_store: ReportStore
) -> dg.MaterializeResult[ClusterReport]:
    """The day's error groups, biggest first, with their share of all error events."""
    day = context.partition_key
    report = report_clusters(error_clusters)
    markdown = report_markdown(report, title=f"Deployment errors on {day}")
    path = report_store.write_text(f"error_clusters_{day}.md", markdown)
    report_store.write_text(
        f"error_clusters_{day}.json", json.dumps(report_document(report, day, str(path)), indent=2)
    )
    # The day first, so the newest day is easy to find among materializations; the groups as a native
    # table, which the UI shows cell by cell as plain text (`<*>` and all); the markdown is for files.
    groups = report_table(report)
    groups_table = dg.MetadataValue.table(
        records=[dg.TableRecord(record) for record in table_records(groups, digits=2)],
        schema=dg.TableSchema(columns=[dg.TableColumn(name, kind) for name, kind in table_columns(groups)]),
    )
    return dg.MaterializeResult(
        value=report,
        metadata={
            "day": day,
            "n_events": report.n_events,
            "n_clusters": report.n_clusters,
            "noise_share": round(report.noise_share, 4),
            "top_cluster_share": round(report.top_cluster_share, 4),
            "groups": groups_table,
            "report_file": dg.MetadataValue.path(str(path)),
        },
    )
