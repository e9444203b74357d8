"""A day's error-cluster chain as plain functions: one per step of the assets, and `run_day`, all of them
in order.

The assets of `assets/error_clusters.py` call the steps with their Config; the benchmarks call
`run_day`, so what they measure is the chain the product runs. The dump and the flattened events are
`FrameParts`, pickled parts on disk, mapped over in worker processes by `resources/frame_parts.py`,
which holds nothing of Dagster.
"""

import functools
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from faultline.cleaning import DEFAULT_PROFILE, Corpus, combine_corpus_parts, corpus_part
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
    cluster_vectors,
    label_events,
    vectorize_texts,
)
from faultline.event_shape import BATCHED, shape_from_config
from faultline.flatten import (
    DEFAULT_ERROR_STATES,
    DEFAULT_MAX_MESSAGE_CHARS,
    EVENT_COLUMNS,
    FlattenedEvents,
    add_flattened_parts,
    flatten_part,
)
from faultline.report import ClusteredEvents, ClusterReport, build_cluster_report, report_rows
from faultline.templates import DEFAULT_MAX_CONSTANT_VALUES, DEFAULT_SIMILARITY
from resources.frame_parts import FrameParts, PartWriter, available_cores, map_parts

# Store rows (batches) per part of the dump: small enough that a worker holds a few parts at once.
DEFAULT_ROWS_PER_PART = 5_000


def resolve_workers(workers: int) -> int:
    """`workers` processes, or one per core when it is 0."""
    return workers if workers > 0 else available_cores()


def flatten_dump(
    dump: FrameParts,
    target: PartWriter,
    error_states: tuple[str, ...] = DEFAULT_ERROR_STATES,
    max_message_chars: int = DEFAULT_MAX_MESSAGE_CHARS,
    workers: int = 0,
    *,
    layout: str = BATCHED,
    message_field: str = "message",
    state_field: str | None = "state",
    scope_field: str | None = "scope",
    every_event_is_error: bool = False,
) -> FlattenedEvents:
    """Each part of the dump's error events (redacted) written as the part of the same index of
    `target`, on `workers` processes; what could not be read and the counts, without the events.

    The events are read by the shape the settings describe (`shape_from_config`, whose ValueError
    names a setting that does not fit): by default Qovery's batches of `scope`, `state`, `message`.
    """
    shape = shape_from_config(
        layout, message_field, state_field, scope_field, error_states, every_event_is_error
    )
    flatten = functools.partial(flatten_part, max_message_chars=max_message_chars, shape=shape)
    return add_flattened_parts(map_parts(flatten, dump, resolve_workers(workers), target=target))


def clean_corpus(
    events: FrameParts,
    template_similarity: float = DEFAULT_SIMILARITY,
    max_constant_values: int = DEFAULT_MAX_CONSTANT_VALUES,
    workers: int = 0,
    *,
    profile: str = DEFAULT_PROFILE,
) -> Corpus:
    """The flattened events' corpus: each part's variants and hints on `workers` processes, then the
    templates mined and cleaned over the day, by the platform rules of `profile`."""
    # The profile's name, not its functions, goes to the workers: they look it up in PROFILES.
    read_part = functools.partial(corpus_part, profile=profile)
    parts = map_parts(read_part, events, resolve_workers(workers))
    return combine_corpus_parts(parts, template_similarity, max_constant_values, profile)


def vectorize_corpus(
    corpus: Corpus,
    vector_size: int = DEFAULT_VECTOR_SIZE,
    window: int = DEFAULT_WINDOW,
    min_count: int = DEFAULT_MIN_COUNT,
    epochs: int = DEFAULT_EPOCHS,
    dm: int = DEFAULT_DM,
    seed: int = DEFAULT_SEED,
    max_templates: int = DEFAULT_MAX_TEMPLATES,
    max_words: int = DEFAULT_MAX_WORDS,
) -> DocumentVectors:
    """A Doc2Vec vector per distinct cleaned template (the most frequent, within `max_templates` and
    `max_words`), with the events that carry it."""
    variants = corpus.variants
    return vectorize_texts(
        variants["cleaned"],
        variants["n_events"],
        vector_size=vector_size,
        window=window,
        min_count=min_count,
        epochs=epochs,
        dm=dm,
        seed=seed,
        max_templates=max_templates,
        max_words=max_words,
    )


def cluster_corpus(
    corpus: Corpus,
    vectors: DocumentVectors,
    eps: float = DEFAULT_EPS,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    metric: str = DEFAULT_METRIC,
    center_vectors: bool = DEFAULT_CENTER_VECTORS,
    merge_clusters_sharing_hint: bool = DEFAULT_MERGE_CLUSTERS_SHARING_HINT,
) -> ClusteredEvents:
    """Every event's group (DBSCAN over the templates' vectors, hint-merged, numbered by size), and the
    rows the report is made of, from the same corpus."""
    labels = cluster_vectors(vectors, eps, min_samples, metric, center_vectors)
    events = label_events(corpus, vectors, labels, merge_clusters_sharing_hint)
    return ClusteredEvents(
        events=events,
        report_rows=report_rows(corpus, events),
        n_dbscan_clusters=len(set(labels.tolist()) - {NOISE}),
        profile=corpus.profile,
    )


def report_clusters(clustered: ClusteredEvents) -> ClusterReport:
    """The day's groups, biggest first, each with its share of all error events, their examples shown
    by the platform rules the corpus was cleaned by."""
    return build_cluster_report(clustered.report_rows, clustered.profile)


@dataclass(frozen=True)
class DaySettings:
    """Every setting of the chain that changes its result, named as in the assets' Config, with the
    same defaults; and the worker processes of flatten and clean (0: one per core)."""

    layout: str = BATCHED
    message_field: str = "message"
    state_field: str | None = "state"
    scope_field: str | None = "scope"
    error_states: tuple[str, ...] = DEFAULT_ERROR_STATES
    every_event_is_error: bool = False
    max_message_chars: int = DEFAULT_MAX_MESSAGE_CHARS
    profile: str = DEFAULT_PROFILE
    template_similarity: float = DEFAULT_SIMILARITY
    max_constant_values: int = DEFAULT_MAX_CONSTANT_VALUES
    vector_size: int = DEFAULT_VECTOR_SIZE
    window: int = DEFAULT_WINDOW
    min_count: int = DEFAULT_MIN_COUNT
    epochs: int = DEFAULT_EPOCHS
    dm: int = DEFAULT_DM
    seed: int = DEFAULT_SEED
    max_templates: int = DEFAULT_MAX_TEMPLATES
    max_words: int = DEFAULT_MAX_WORDS
    eps: float = DEFAULT_EPS
    min_samples: int = DEFAULT_MIN_SAMPLES
    metric: str = DEFAULT_METRIC
    center_vectors: bool = DEFAULT_CENTER_VECTORS
    merge_clusters_sharing_hint: bool = DEFAULT_MERGE_CLUSTERS_SHARING_HINT
    workers: int = 0


@dataclass(frozen=True)
class Day:
    """What each step of a day's chain made, as the assets of the same names hold it."""

    flattened: FlattenedEvents  # the quarantine and counts (`event_quarantine`), no events
    events: FrameParts  # `flattened_events`
    corpus: Corpus
    vectors: DocumentVectors
    clustered: ClusteredEvents
    report: ClusterReport


def run_day(dump: FrameParts, folder: Path | str, settings: DaySettings = DaySettings()) -> Day:
    """The day's chain from the dump's parts to the report, the steps in the assets' order.

    The flattened events are written in parts to `folder` (created if missing; give an empty one).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    writer = PartWriter(folder, EVENT_COLUMNS)
    flattened = flatten_dump(
        dump,
        writer,
        settings.error_states,
        settings.max_message_chars,
        settings.workers,
        layout=settings.layout,
        message_field=settings.message_field,
        state_field=settings.state_field,
        scope_field=settings.scope_field,
        every_event_is_error=settings.every_event_is_error,
    )
    events = writer.commit()
    corpus = clean_corpus(
        events,
        settings.template_similarity,
        settings.max_constant_values,
        settings.workers,
        profile=settings.profile,
    )
    vectors = vectorize_corpus(
        corpus,
        settings.vector_size,
        settings.window,
        settings.min_count,
        settings.epochs,
        settings.dm,
        settings.seed,
        settings.max_templates,
        settings.max_words,
    )
    clustered = cluster_corpus(
        corpus,
        vectors,
        settings.eps,
        settings.min_samples,
        settings.metric,
        settings.center_vectors,
        settings.merge_clusters_sharing_hint,
    )
    return Day(flattened, events, corpus, vectors, clustered, report_clusters(clustered))


def write_parts(
    frame: pd.DataFrame, folder: Path | str, rows_per_part: int = DEFAULT_ROWS_PER_PART
) -> FrameParts:
    """A table held in memory (a dump's rows, for a benchmark or a test) as parts in `folder`,
    `rows_per_part` rows each, as the dump asset writes the rows it streams from the store."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    writer = PartWriter(folder, list(frame.columns))
    for start in range(0, len(frame), rows_per_part):
        writer.write(frame.iloc[start : start + rows_per_part].reset_index(drop=True))
    return writer.commit()
