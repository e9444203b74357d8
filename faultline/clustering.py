"""Vectorizing and clustering: Doc2Vec vectors of the distinct message templates, grouped by DBSCAN.

Each distinct template (see `faultline.templates`) is trained once and carries its event count,
which DBSCAN takes as a sample weight: a message seen 1,000 times weighs 1,000 times, at the cost
of one vector. At most `max_templates` of them, the most frequent, are vectorized: Doc2Vec's
training and DBSCAN grow with the templates, and a day of many distinct messages could otherwise
take hours. The events of the rest are counted apart, as not vectorized.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from faultline.cleaning import Corpus

if TYPE_CHECKING:
    from gensim.models.doc2vec import Doc2Vec, TaggedDocument

# gensim and scikit-learn are imported where they are used: together they are over a second of every
# process that loads the definitions (the code server, each run launched from the UI) but trains nothing.

NOISE = -1
NO_TEXT = -2  # events whose message was nothing but boilerplate; counted, never vectorized
NOT_VECTORIZED = -3  # events of the templates past `max_templates`, the least frequent; counted

# The shipped defaults, which the assets' Config takes. Doc2Vec keeps the seed's values (Qovery's
# post: Doc2Vec(vector_size=80, window=2, min_count=1, epochs=1000), gensim's defaults otherwise).
# DBSCAN does not: the seed ran DBSCAN(eps=0.2, min_samples=5, metric="cosine") on raw vectors, to
# group messages; ours group templates, and the README's "Defaults" says why each value differs.
DEFAULT_VECTOR_SIZE = 80
DEFAULT_WINDOW = 2
DEFAULT_MIN_COUNT = 1
DEFAULT_EPOCHS = 1000
DEFAULT_DM = 1  # distributed memory, gensim's default
DEFAULT_SEED = 42  # fixed, with one worker thread, so the same texts give the same vectors
# Bounds of ours, not the seed's (which trained on every message): Doc2Vec's training costs its
# epochs times the words of its documents, and DBSCAN up to the square of the templates. The most
# frequent templates are vectorized while there are at most `max_templates` of them and `max_words`
# words in all, each template's first `_MAX_DOCUMENT_WORDS` (gensim cuts a document at 10,000). A
# demo day has about 90 templates of 2,800 words, a loghub system at most 115 templates (Linux) and
# 990 words (BGL), the longest 105 words (HDFS). 5,000 words of words each seen once (the worst: no
# frequent word is skipped by gensim's downsampling) train 1,000 epochs in about 80 s on this
# project's 2-core machine when it is busy (load average 9); the demo day's 2,800, in 11 s.
DEFAULT_MAX_TEMPLATES = 1_000
DEFAULT_MAX_WORDS = 5_000
_MAX_DOCUMENT_WORDS = 1_000
# Chosen leaving one loghub system out at a time (bench/accuracy_loso.py): DBSCAN merges only
# templates whose vectors nearly coincide, as the template step has already folded what varies.
DEFAULT_EPS = 0.005
DEFAULT_MIN_SAMPLES = 2
DEFAULT_METRIC = "cosine"
DEFAULT_CENTER_VECTORS = True
DEFAULT_MERGE_CLUSTERS_SHARING_HINT = True


@dataclass(frozen=True)
class DocumentVectors:
    """One vector per distinct text (a template), with how many events carry that text; and how many
    texts, and events, were left out past `max_templates`."""

    texts: list[str]
    counts: np.ndarray
    vectors: np.ndarray
    left_out_texts: int = 0
    left_out_events: int = 0


def vectorize_texts(
    texts: pd.Series,
    counts: pd.Series | np.ndarray | None = None,
    vector_size: int = DEFAULT_VECTOR_SIZE,
    window: int = DEFAULT_WINDOW,
    min_count: int = DEFAULT_MIN_COUNT,
    epochs: int = DEFAULT_EPOCHS,
    dm: int = DEFAULT_DM,
    seed: int = DEFAULT_SEED,
    max_templates: int = DEFAULT_MAX_TEMPLATES,
    max_words: int = DEFAULT_MAX_WORDS,
) -> DocumentVectors:
    """Train Doc2Vec on the distinct non-empty texts of `texts`, each counted `counts` times (1 each
    when not given: one text per event): on the most frequent, while they are at most
    `max_templates` and their words at most `max_words` (a text is its first `_MAX_DOCUMENT_WORDS`
    words; one that does not fit is passed over for the next). The others are counted as left out.

    Texts are sorted so the same set of texts always trains in the same order; one worker thread
    and a fixed seed make the vectors repeatable.
    """
    if max_templates < 1 or max_words < 1:
        raise ValueError(f"max_templates and max_words must be at least 1, got {max_templates}, {max_words}")
    weights = pd.Series(1 if counts is None else np.asarray(counts), index=texts.index, dtype=np.int64)
    has_text = texts.str.len() > 0
    totals = weights[has_text].groupby(texts[has_text]).sum().sort_index()
    # A stable sort of the text-ordered totals: of equally frequent texts, the first in text order.
    by_frequency = totals.sort_values(ascending=False, kind="stable")
    words_of: dict[str, list[str]] = {}
    words_left = max_words
    for text in by_frequency.index:
        words = text.split()[:_MAX_DOCUMENT_WORDS]
        if len(words) <= words_left:
            words_of[text] = words
            words_left -= len(words)
            if len(words_of) == max_templates or not words_left:
                break
    kept = by_frequency.index.isin(list(words_of))
    left_out = by_frequency[~kept]
    totals = by_frequency[kept].sort_index()
    distinct = totals.index.tolist()
    if not distinct:
        return DocumentVectors(
            texts=[],
            counts=np.zeros(0, dtype=np.int64),
            vectors=np.zeros((0, vector_size)),
            left_out_texts=len(left_out),
            left_out_events=int(left_out.sum()),
        )
    from gensim.models.doc2vec import TaggedDocument

    documents = [TaggedDocument(words_of[text], [position]) for position, text in enumerate(distinct)]
    model = train_doc2vec(
        documents,
        vector_size=vector_size,
        window=window,
        min_count=min_count,
        epochs=epochs,
        dm=dm,
        seed=seed,
    )
    vectors = np.vstack([model.dv[position] for position in range(len(distinct))])
    return DocumentVectors(
        texts=distinct,
        counts=totals.to_numpy(dtype=np.int64),
        vectors=vectors,
        left_out_texts=len(left_out),
        left_out_events=int(left_out.sum()),
    )


class _Repeated:
    """The documents `times` times over, as one corpus."""

    def __init__(self, documents: "list[TaggedDocument]", times: int) -> None:
        self.documents, self.times = documents, times

    def __iter__(self):
        for _ in range(self.times):
            yield from self.documents


def train_doc2vec(documents: "list[TaggedDocument]", epochs: int, **parameters) -> "Doc2Vec":
    """`Doc2Vec(documents, epochs=epochs, workers=1, **parameters)`, the same vectors, sooner.

    gensim starts a job producer and a worker thread for every epoch, and on a day's few hundred
    templates that costs far more than the training (about 2.6 ms an epoch against 0.05 ms). When an
    epoch's words fit in one job (gensim's `batch_words`), as they do for up to some 10,000 words,
    one pass over the documents repeated `epochs` times, each repetition a job, trains the same jobs
    in the same order with the same learning rates and random draws: the very same vectors. Larger
    corpora, and any holding a document of no words, train epoch by epoch as gensim does.
    """
    from gensim.models.doc2vec import Doc2Vec

    words = sum(len(document.words) for document in documents)
    model = Doc2Vec(epochs=epochs, workers=1, **parameters)
    # A document of no words would end a repetition's job early and shift every later one.
    if words > model.batch_words or not all(document.words for document in documents):
        return Doc2Vec(documents, epochs=epochs, workers=1, **parameters)
    model.build_vocab(documents)
    model.batch_words = words  # a job ends where a repetition does
    model.train(_Repeated(documents, epochs), total_examples=model.corpus_count * epochs, epochs=1)
    return model


def cluster_vectors(
    document_vectors: DocumentVectors,
    eps: float = DEFAULT_EPS,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    metric: str = DEFAULT_METRIC,
    center: bool = DEFAULT_CENTER_VECTORS,
) -> np.ndarray:
    """DBSCAN labels per distinct text (noise is -1), each text weighted by its event count.

    With `center`, the mean vector is subtracted first. Doc2Vec trains every document toward the
    same frequent words, so its vectors share one direction and any two look close under cosine
    (on a few short templates, every pair within 0.07); centering removes that common part (Mu and
    Viswanath 2018, "All-but-the-Top").
    """
    if len(document_vectors.texts) == 0:
        return np.zeros(0, dtype=np.int64)
    vectors = document_vectors.vectors
    if center:
        vectors = vectors - vectors.mean(axis=0)
    from sklearn.cluster import DBSCAN

    return DBSCAN(eps=eps, min_samples=min_samples, metric=metric).fit_predict(
        vectors, sample_weight=document_vectors.counts
    )


def event_weights(rows: pd.DataFrame) -> pd.Series:
    """How many events each row stands for: its `n_events`, else one (a row per event)."""
    return rows["n_events"] if "n_events" in rows else pd.Series(1, index=rows.index, dtype=np.int64)


def _first_events(rows: pd.DataFrame) -> pd.Series:
    """Where each row's first event stands in the day: its `first_event`, else its own position."""
    if "first_event" in rows:
        return rows["first_event"]
    return pd.Series(np.arange(len(rows)), index=rows.index)


def assign_clusters(
    rows: pd.DataFrame, document_vectors: DocumentVectors, labels: np.ndarray
) -> pd.DataFrame:
    """`rows` with a `cluster_id`: their cleaned text's cluster, noise (-1), no text (-2) or, for a
    text left out of the vectors, not vectorized (-3)."""
    label_of_text = dict(zip(document_vectors.texts, labels.tolist(), strict=True))
    clustered = rows.copy()
    unlabelled = pd.Series(np.where(rows["cleaned"].str.len() > 0, NOT_VECTORIZED, NO_TEXT), index=rows.index)
    clustered["cluster_id"] = clustered["cleaned"].map(label_of_text).fillna(unlabelled).astype(np.int64)
    return clustered


def merge_clusters_sharing_hint(clustered: pd.DataFrame, min_hint_share: float = 0.5) -> pd.DataFrame:
    """Clusters whose events mostly carry the same hint become one cluster.

    Qovery's engine ends a message with a hint that names its diagnosis. Variants of one failure
    (a liveness and a readiness probe failing, a Java and a Node heap running out) word the error
    differently but carry the same hint; a person reading the clusters merges them, as the seed's
    author did by hand. A cluster whose most common hint (of two as common, the one seen first) is
    empty or carried by fewer than `min_hint_share` of its events stays as it is. Noise stays noise.
    Rows are events in their order, or carry how many events they stand for in `n_events` and the
    position of the first of them in `first_event`.
    """
    in_clusters = clustered[clustered["cluster_id"] >= 0]
    if in_clusters.empty:
        return clustered
    keys = [in_clusters["cluster_id"], in_clusters["hint"]]
    hints = pd.DataFrame(
        {
            "events": event_weights(in_clusters).groupby(keys).sum(),
            "first_event": _first_events(in_clusters).groupby(keys).min(),
        }
    )
    hints["share"] = hints["events"] / hints.groupby(level="cluster_id")["events"].transform("sum")
    dominant = hints.reset_index().sort_values(
        ["cluster_id", "share", "first_event"], ascending=[True, False, True]
    )
    dominant = dominant.drop_duplicates("cluster_id").set_index("cluster_id")
    dominant = dominant[(dominant["hint"] != "") & (dominant["share"] >= min_hint_share)]
    first_cluster_of_hint = dominant.reset_index().groupby("hint")["cluster_id"].min()
    merged_into = dominant["hint"].map(first_cluster_of_hint)
    merged = clustered.copy()
    merged["cluster_id"] = merged["cluster_id"].map(merged_into).fillna(merged["cluster_id"]).astype(np.int64)
    return merged


def number_clusters_by_size(clustered: pd.DataFrame) -> pd.DataFrame:
    """Renumber clusters 0, 1, ... by event count, biggest first; noise and no-text keep their labels.

    Equal-sized clusters are ordered by their smallest cleaned text, so the numbering does not
    depend on the order DBSCAN visited the points in.
    """
    in_clusters = clustered[clustered["cluster_id"] >= 0]
    sizes = pd.DataFrame(
        {
            "count": event_weights(in_clusters).groupby(in_clusters["cluster_id"]).sum(),
            "first": in_clusters.groupby("cluster_id")["cleaned"].min(),
        }
    )
    order = sizes.sort_values(["count", "first"], ascending=[False, True]).index
    renumber = {old: new for new, old in enumerate(order)}
    numbered = clustered.copy()
    numbered["cluster_id"] = (
        numbered["cluster_id"].map(lambda label: renumber.get(label, label)).astype(np.int64)
    )
    return numbered


def variant_hint_rows(corpus: Corpus) -> pd.DataFrame:
    """One row per (variant, hint) the day's events carry, with `n_events`, the position of the first
    (`first_event`), the variant's `cleaned` text and the hint's cleaned text (`hint`): the events,
    grouped as clustering can tell them apart."""
    events = corpus.events.assign(position=np.arange(len(corpus.events)))
    rows = (
        events.groupby(["variant", "hint"])["position"].agg(n_events="size", first_event="min").reset_index()
    )
    rows["cleaned"] = corpus.variants["cleaned"].to_numpy()[rows["variant"].to_numpy()]
    rows["hint_id"] = rows["hint"]
    rows["hint"] = corpus.hints["cleaned"].to_numpy()[rows["hint_id"].to_numpy()]
    return rows


def label_events(
    corpus: Corpus,
    document_vectors: DocumentVectors,
    labels: np.ndarray,
    merge_by_hint: bool = DEFAULT_MERGE_CLUSTERS_SHARING_HINT,
) -> pd.DataFrame:
    """Every event with its final group: its template's DBSCAN cluster, hint-merged, numbered by size.

    One row per event (`row_id`, `event_index`, `variant`, `hint`, `cluster_id`), in the corpus's
    order; the work is done once per variant and hint, not once per event.
    """
    clustered = assign_clusters(variant_hint_rows(corpus), document_vectors, labels)
    if merge_by_hint:
        clustered = merge_clusters_sharing_hint(clustered)
    clustered = number_clusters_by_size(clustered)
    # A variant's rows share its cleaned text, so its cluster, whatever their hints.
    cluster_of_variant = np.full(len(corpus.variants), NO_TEXT, dtype=np.int64)
    cluster_of_variant[clustered["variant"].to_numpy()] = clustered["cluster_id"].to_numpy()
    events = corpus.events.copy()
    events["cluster_id"] = cluster_of_variant[events["variant"].to_numpy()]
    return events
