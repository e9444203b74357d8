"""Vectors of distinct texts, DBSCAN weighted by event counts, clusters numbered by size."""

import numpy as np
import pandas as pd

from faultline.clustering import (
    NO_TEXT,
    NOISE,
    DocumentVectors,
    assign_clusters,
    cluster_vectors,
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
    assert cluster_vectors(vectors, eps=0.2, min_samples=5).tolist() == [1, NOISE, 0]


def test_close_texts_join_one_cluster_and_clusters_are_numbered_biggest_first():
    vectors = vectors_of([(1, 0), (0.99, 0.05), (0, 1), (0.02, 1)], counts=[2, 3, 10, 1])
    assert cluster_vectors(vectors, eps=0.2, min_samples=5).tolist() == [1, 1, 0, 0]


def test_events_get_their_texts_cluster_and_empty_texts_their_own_label():
    corpus = pd.DataFrame({"cleaned": ["text 0", "text 1", "", "text 0"]})
    vectors = vectors_of([(1, 0), (0, 1)], counts=[2, 1])
    clustered = assign_clusters(corpus, vectors, np.array([0, NOISE]))
    assert clustered["cluster_id"].tolist() == [0, NOISE, NO_TEXT, 0]
