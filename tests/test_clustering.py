"""Vectors of distinct texts, DBSCAN weighted by event counts, clusters numbered by size."""

import inspect

import numpy as np
import pandas as pd
from gensim.models.doc2vec import Doc2Vec, TaggedDocument

from assets.error_clusters import DBSCANConfig, Doc2VecConfig
from faultline.cleaning import build_corpus
from faultline.clustering import (
    NO_TEXT,
    NOISE,
    NOT_VECTORIZED,
    DocumentVectors,
    assign_clusters,
    cluster_vectors,
    label_events,
    merge_clusters_sharing_hint,
    number_clusters_by_size,
    train_doc2vec,
    vectorize_texts,
)


def vectors_of(directions: list[tuple[float, float]], counts: list[int]) -> DocumentVectors:
    return DocumentVectors(
        texts=[f"text {i}" for i in range(len(counts))],
        counts=np.array(counts),
        vectors=np.array(directions, dtype=float),
    )


def test_identical_texts_are_vectorized_once_with_their_count():
    cleaned = pd.Series(["disk full", "probe failed", "disk full", "", "disk full"])
    vectors = vectorize_texts(cleaned, vector_size=8, epochs=5)
    assert vectors.texts == ["disk full", "probe failed"]
    assert vectors.counts.tolist() == [3, 1]
    assert vectors.vectors.shape == (2, 8)


def test_same_texts_give_the_same_vectors_whatever_their_order():
    texts = pd.Series(
        ["disk full on node", "readiness probe failed", "image push denied", "disk full on node"]
    )
    first = vectorize_texts(texts, vector_size=16, epochs=50)
    second = vectorize_texts(texts[::-1].reset_index(drop=True), vector_size=16, epochs=50)
    np.testing.assert_array_equal(first.vectors, second.vectors)


def test_an_empty_corpus_has_no_vectors():
    vectors = vectorize_texts(pd.Series(["", ""], dtype=str))
    assert vectors.texts == [] and vectors.vectors.shape == (0, 80)
    assert cluster_vectors(vectors).tolist() == []


def test_a_text_seen_min_samples_times_is_a_cluster_on_its_own():
    # Three directions far apart (cosine distance 1): only counts can make a point a core point.
    vectors = vectors_of([(1, 0), (0, 1), (-1, 0)], counts=[5, 4, 12])
    labels = cluster_vectors(vectors, eps=0.2, min_samples=5, center=False)
    assert labels[1] == NOISE
    assert labels[0] >= 0 and labels[2] >= 0 and labels[0] != labels[2]


def test_close_texts_join_one_cluster():
    vectors = vectors_of([(1, 0), (0.99, 0.05), (0, 1), (0.02, 1)], counts=[2, 3, 10, 1])
    labels = cluster_vectors(vectors, eps=0.2, min_samples=5, center=False)
    assert labels[0] == labels[1] != labels[2] == labels[3]


def test_events_get_their_texts_cluster_and_empty_texts_their_own_label():
    corpus = pd.DataFrame({"cleaned": ["text 0", "text 1", "", "text 0"]})
    vectors = vectors_of([(1, 0), (0, 1)], counts=[2, 1])
    clustered = assign_clusters(corpus, vectors, np.array([0, NOISE]))
    assert clustered["cluster_id"].tolist() == [0, NOISE, NO_TEXT, 0]


def events(rows: list[tuple[int, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["cluster_id", "cleaned", "hint"])


def test_clusters_sharing_their_hint_become_one():
    clustered = events(
        [(3, "liveness probe failed", "check port")] * 2
        + [(1, "readiness probe failed", "check port")] * 3
        + [(2, "heap out memory", "increase memory")] * 2
    )
    assert merge_clusters_sharing_hint(clustered)["cluster_id"].tolist() == [1] * 5 + [2] * 2


def test_clusters_without_a_dominant_hint_stay_apart():
    clustered = events(
        [(0, "disk full", "")] * 2
        + [(1, "disk full node", "")] * 2
        + [(2, "a", "h1"), (2, "b", "h2"), (2, "c", "h3"), (3, "d", "h1"), (3, "e", "h1")]
    )
    assert merge_clusters_sharing_hint(clustered)["cluster_id"].tolist() == [0, 0, 1, 1, 2, 2, 2, 3, 3]


def test_noise_and_empty_texts_are_never_merged():
    clustered = events(
        [(NOISE, "odd", "check port"), (0, "probe failed", "check port"), (NO_TEXT, "", "check port")]
    )
    assert merge_clusters_sharing_hint(clustered)["cluster_id"].tolist() == [NOISE, 0, NO_TEXT]


def test_clusters_are_numbered_biggest_first_and_ties_by_text():
    clustered = events(
        [(7, "b", ""), (7, "b", ""), (4, "z", ""), (4, "z", ""), (4, "z", ""), (9, "a", ""), (9, "a", "")]
        + [(NOISE, "n", ""), (NO_TEXT, "", "")]
    )
    assert number_clusters_by_size(clustered)["cluster_id"].tolist() == [2, 2, 0, 0, 0, 1, 1, NOISE, NO_TEXT]


def test_centering_separates_vectors_that_share_one_common_direction():
    # Doc2Vec's vectors all lean one way: under cosine, the raw vectors are within 0.2 of each other.
    common = np.array([10.0, 10.0, 10.0])
    own = [(1, 0, 0), (0.95, 0.05, 0), (0, 1, 0), (0, 0, 1)]
    vectors = vectors_of([tuple(common + np.array(v)) for v in own], counts=[3, 3, 3, 3])
    assert len(set(cluster_vectors(vectors, eps=0.2, min_samples=2, center=False).tolist())) == 1
    labels = cluster_vectors(vectors, eps=0.2, min_samples=2, center=True)
    assert labels[0] == labels[1] and len({labels[0], labels[2], labels[3]}) == 3


def test_rows_standing_for_many_events_weigh_their_count():
    clustered = pd.DataFrame(
        [(3, "liveness", "check port", 3), (3, "liveness", "other", 1), (1, "readiness", "check port", 1)]
        + [(2, "heap", "", 5)],
        columns=["cluster_id", "cleaned", "hint", "n_events"],
    )
    # Cluster 3's events carry "check port" 3 times in 4: it joins cluster 1, whose hint it is.
    merged = merge_clusters_sharing_hint(clustered)
    assert merged["cluster_id"].tolist() == [1, 1, 1, 2]
    # 5 events each: the tie goes to the smaller text, "heap".
    assert number_clusters_by_size(merged)["cluster_id"].tolist() == [1, 1, 1, 0]


def test_texts_are_vectorized_once_with_the_events_their_rows_stand_for():
    texts = pd.Series(["disk full", "probe failed", "disk full", ""])
    vectors = vectorize_texts(texts, pd.Series([2, 5, 1, 9]), vector_size=8, epochs=5)
    assert vectors.texts == ["disk full", "probe failed"]
    assert vectors.counts.tolist() == [3, 5]


def test_every_event_gets_the_cluster_of_its_variant_in_the_corpus_order():
    messages = [
        "disk full on /a",
        "probe failed",
        "disk full on /b",
        "---",
        "probe failed",
        "disk full on /c",
    ]
    corpus = build_corpus(pd.DataFrame({"row_id": range(6), "event_index": 0, "message": messages}))
    assert corpus.variants["cleaned"].tolist() == ["disk full var", "probe failed", ""]
    vectors = vectors_of([(1, 0), (0, 1)], counts=[3, 2])
    vectors = DocumentVectors(
        texts=["disk full var", "probe failed"], counts=vectors.counts, vectors=vectors.vectors
    )
    clusters = label_events(corpus, vectors, np.array([0, NOISE]), merge_by_hint=False)
    assert clusters["row_id"].tolist() == list(range(6))
    assert clusters["cluster_id"].tolist() == [0, NOISE, 0, NO_TEXT, NOISE, 0]


def test_training_in_one_pass_gives_the_vectors_of_gensims_epochs():
    texts = [f"probe failed port {n % 7} pod {n % 5} not ready" for n in range(40)] + ["disk full"]
    documents = [TaggedDocument(text.split(), [n]) for n, text in enumerate(sorted(set(texts)))]
    parameters = {"vector_size": 16, "window": 2, "min_count": 1, "dm": 1, "seed": 42}
    fast = train_doc2vec(documents, epochs=60, **parameters)
    gensim = Doc2Vec(documents, epochs=60, workers=1, **parameters)
    np.testing.assert_array_equal(fast.dv.vectors, gensim.dv.vectors)
    np.testing.assert_array_equal(fast.wv.vectors, gensim.wv.vectors)
    with_an_empty_document = [TaggedDocument([], [len(documents)]), *documents]
    np.testing.assert_array_equal(
        train_doc2vec(with_an_empty_document, epochs=60, **parameters).dv.vectors,
        Doc2Vec(with_an_empty_document, epochs=60, workers=1, **parameters).dv.vectors,
    )


def test_of_two_hints_as_common_in_a_cluster_the_one_seen_first_decides():
    zeta_first = events([(0, "a", "zeta"), (0, "b", "alpha"), (1, "c", "zeta"), (2, "d", "alpha")])
    assert merge_clusters_sharing_hint(zeta_first)["cluster_id"].tolist() == [0, 0, 0, 2]
    alpha_first = events([(0, "b", "alpha"), (0, "a", "zeta"), (1, "c", "zeta"), (2, "d", "alpha")])
    assert merge_clusters_sharing_hint(alpha_first)["cluster_id"].tolist() == [0, 0, 1, 0]
    # Rows standing for many events: by where the first of them stands, not by the rows' order.
    rows = zeta_first.assign(n_events=[2, 2, 1, 1], first_event=[7, 3, 0, 1])
    assert merge_clusters_sharing_hint(rows)["cluster_id"].tolist() == [0, 0, 1, 0]


def defaults_of(function) -> dict[str, object]:
    return {
        name: parameter.default
        for name, parameter in inspect.signature(function).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }


def test_the_functions_defaults_are_the_shipped_configs():
    assert defaults_of(vectorize_texts) == {"counts": None, **Doc2VecConfig().model_dump()}
    dbscan = DBSCANConfig()
    assert defaults_of(cluster_vectors) == {
        "eps": dbscan.eps,
        "min_samples": dbscan.min_samples,
        "metric": dbscan.metric,
        "center": dbscan.center_vectors,
    }
    assert defaults_of(label_events) == {"merge_by_hint": dbscan.merge_clusters_sharing_hint}
    # Not the seed's DBSCAN (0.2, 5, raw vectors): the README's "Defaults" says why.
    assert (dbscan.eps, dbscan.min_samples, dbscan.center_vectors) == (0.005, 2, True)


def test_past_max_templates_the_most_frequent_are_vectorized_and_the_rest_counted():
    texts = pd.Series(["disk full", "probe failed", "push denied", "quota hit", "oom killed"])
    vectors = vectorize_texts(texts, counts=[5, 1, 9, 1, 2], vector_size=8, epochs=5, max_templates=3)
    # Of the two texts seen once, the first in text order would be kept; neither fits.
    assert vectors.texts == ["disk full", "oom killed", "push denied"]
    assert vectors.counts.tolist() == [5, 2, 9]
    assert (vectors.left_out_texts, vectors.left_out_events) == (2, 2)
    tied = vectorize_texts(texts, counts=[5, 1, 9, 1, 2], vector_size=8, epochs=5, max_templates=4)
    assert tied.texts == ["disk full", "oom killed", "probe failed", "push denied"]


def test_past_max_words_the_most_frequent_templates_that_fit_are_vectorized():
    texts = pd.Series(["one two three four five six seven", "disk full", "probe failed now", "oom"])
    vectors = vectorize_texts(texts, counts=[9, 5, 2, 1], vector_size=8, epochs=5, max_words=6)
    # Seven words do not fit in six: the next most frequent that fit are taken.
    assert vectors.texts == ["disk full", "oom", "probe failed now"]
    assert (vectors.left_out_texts, vectors.left_out_events) == (1, 9)


def test_under_max_templates_the_vectors_are_those_without_a_cap():
    texts = pd.Series(["disk full on node", "readiness probe failed", "image push denied"])
    capped = vectorize_texts(texts, vector_size=16, epochs=20, max_templates=3)
    uncapped = vectorize_texts(texts, vector_size=16, epochs=20, max_templates=10_000)
    np.testing.assert_array_equal(capped.vectors, uncapped.vectors)
    assert (capped.left_out_texts, capped.left_out_events) == (0, 0)


def test_events_of_templates_left_out_are_labelled_not_vectorized():
    rows = pd.DataFrame({"cleaned": ["text 0", "rare text", "", "text 0"]})
    clustered = assign_clusters(rows, vectors_of([(1, 0)], counts=[2]), np.array([0]))
    assert clustered["cluster_id"].tolist() == [0, NOT_VECTORIZED, NO_TEXT, 0]
