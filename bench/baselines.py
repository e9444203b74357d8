"""What a user would pick instead of faultline, for the benchmarks: Drain3 and the seed's pipeline.

Each method takes the raw messages and returns one group label per message; a negative label
means "in no group" (noise, or no text left), which the benchmark scores as a group of one.
"""

import importlib.util
import re
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from gensim.models.doc2vec import Doc2Vec, TaggedDocument
from sklearn.cluster import DBSCAN
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

if TYPE_CHECKING:
    from drain3 import TemplateMiner

NO_TEXT = -2

# Drain3's own example configuration, examples/drain3.ini in github.com/logpai/Drain3 (commit
# 08221175), section [MASKING]: the same patterns and mask names, in the same order (order matters:
# an IP must be masked before its numbers are). JSON-escaped there (`\\d`), raw strings here.
DRAIN3_EXAMPLE_MASKING: tuple[tuple[str, str], ...] = (
    (r"((?<=[^A-Za-z0-9])|^)(([0-9a-f]{2,}:){3,}([0-9a-f]{2,}))((?=[^A-Za-z0-9])|$)", "ID"),
    (r"((?<=[^A-Za-z0-9])|^)(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})((?=[^A-Za-z0-9])|$)", "IP"),
    (r"((?<=[^A-Za-z0-9])|^)([0-9a-f]{6,} ?){3,}((?=[^A-Za-z0-9])|$)", "SEQ"),
    (r"((?<=[^A-Za-z0-9])|^)([0-9A-F]{4} ?){4,}((?=[^A-Za-z0-9])|$)", "SEQ"),
    (r"((?<=[^A-Za-z0-9])|^)(0x[a-f0-9A-F]+)((?=[^A-Za-z0-9])|$)", "HEX"),
    (r"((?<=[^A-Za-z0-9])|^)([\-\+]?\d+)((?=[^A-Za-z0-9])|$)", "NUM"),
    (r'(?<=executed cmd )(".+?")', "CMD"),
)

# The seed's values (Qovery's blog post, /work/shared/seeds/qovery-error-clustering.txt):
# Doc2Vec(vector_size=80, window=2, min_count=1, epochs=1000), DBSCAN(eps=.2, min_samples=5, metric='cosine').
SEED_DOC2VEC = {"vector_size": 80, "window": 2, "min_count": 1, "epochs": 1000}
SEED_DBSCAN = {"eps": 0.2, "min_samples": 5, "metric": "cosine"}

_NUMBERS = re.compile(r"\d+")
_PUNCTUATION = re.compile(r"[^\w\s]")
_WHITESPACE = re.compile(r"\s+")


def require_drain3() -> None:
    """Fail before any long run when the bench-only extra is missing."""
    if importlib.util.find_spec("drain3") is None:
        raise SystemExit(
            "Drain3 is not installed, and the accuracy benchmark compares against it: "
            "run `.venv/bin/pip install drain3` (a bench-only extra, see bench/README.md), "
            "or leave it out with `--methods faultline,seed`."
        )


def drain3_miner() -> "TemplateMiner":
    """A fresh Drain3 TemplateMiner: default TemplateMinerConfig plus the example masking.

    The one place the accuracy and scale benchmarks set Drain3 up, so both measure the same miner.
    """
    # Imported here so that the rest of the benchmark runs, and says what to install, without it.
    from drain3 import TemplateMiner
    from drain3.masking import MaskingInstruction
    from drain3.template_miner_config import TemplateMinerConfig

    config = TemplateMinerConfig()
    config.masking_instructions = [
        MaskingInstruction(pattern, name) for pattern, name in DRAIN3_EXAMPLE_MASKING
    ]
    return TemplateMiner(config=config)


def drain3_groups(messages: pd.Series) -> np.ndarray:
    """Each message's Drain3 cluster id: default TemplateMiner config plus the example masking."""
    miner = drain3_miner()
    # Drain3 never merges or renumbers clusters, so the id a message gets when it arrives is final.
    return np.array(
        [miner.add_log_message(message)["cluster_id"] for message in messages.astype(str)], dtype=np.int64
    )


def seed_clean(messages: pd.Series) -> pd.Series:
    """The seed's cleaning in its order: lowercase, numbers, punctuation, stop words, whitespace, unicode.

    Its Qovery-specific step has nothing to remove from other systems' logs. The post does not show
    how punctuation goes: it becomes a space here, as in faultline's cleaning, so `workerEnv.init()`
    is two words; deleted instead, the seed's mean GA on loghub-2k drops from 0.66 to 0.59.
    Stop words are scikit-learn's English list.
    """
    cleaned = messages.astype(str).str.lower()
    cleaned = cleaned.str.replace(_NUMBERS, "", regex=True)
    cleaned = cleaned.str.replace(_PUNCTUATION, " ", regex=True)
    cleaned = cleaned.map(lambda text: " ".join(w for w in text.split() if w not in ENGLISH_STOP_WORDS))
    cleaned = cleaned.str.replace(_WHITESPACE, " ", regex=True).str.strip()
    return cleaned.map(lambda text: text.encode("ascii", "ignore").decode("ascii"))


def seed_groups(messages: pd.Series) -> np.ndarray:
    """The seed's pipeline as written: Doc2Vec on every message (no deduplication), then DBSCAN.

    The post's snippet clusters `vec.docvecs.index_to_key`, the documents' tags rather than their
    vectors (a bug: DBSCAN would get a list of integers); this clusters the vectors, as meant.
    One worker and a fixed seed, like faultline's own training, so times compare and reruns repeat.
    Messages left empty by cleaning (the seed's non-empty step drops them) get NO_TEXT.
    """
    cleaned = seed_clean(messages)
    has_text = (cleaned.str.len() > 0).to_numpy()
    labels = np.full(len(cleaned), NO_TEXT, dtype=np.int64)
    texts = cleaned[has_text].tolist()
    if not texts:
        return labels
    documents = [TaggedDocument(text.split(), [position]) for position, text in enumerate(texts)]
    model = Doc2Vec(documents, **SEED_DOC2VEC, seed=42, workers=1)
    # Integer tags 0..n-1 index the rows of `dv.vectors` directly.
    labels[has_text] = DBSCAN(**SEED_DBSCAN).fit_predict(model.dv.vectors)
    return labels
