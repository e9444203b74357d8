"""Cleaning: error messages become short normalized texts that a vectorizer can compare.

The steps are Qovery's eight (lowercase, numbers, punctuation, stop words, whitespace, platform
boilerplate, unicode, non-empty). One change of order: the boilerplate rules run second, before
numbers and punctuation are stripped, because they need the message's structure (the framing's
lines, the punctuation that makes a URL, a path or an IP address) to find what to remove.
"""

import re
import unicodedata

import pandas as pd
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from faultline.redaction import SECRET_KINDS
from faultline.templates import (
    DEFAULT_MAX_CONSTANT_VALUES,
    DEFAULT_SIMILARITY,
    WILDCARD,
    mine_templates,
    template_tokens,
)

# scikit-learn's English list, less the words that carry an error's meaning: negations ("not found",
# "no such file") and the content words the list also holds ("found", "empty", "down", "out").
_MEANINGFUL_IN_ERRORS = {
    "not",
    "no",
    "nor",
    "cannot",
    "none",
    "found",
    "system",
    "empty",
    "full",
    "fill",
    "call",
    "find",
    "move",
    "show",
    "back",
    "top",
    "bottom",
    "front",
    "name",
    "part",
    "detail",
    "fire",
    "amount",
    "computer",
    "describe",
    "give",
    "go",
    "keep",
    "put",
    "see",
    "take",
    "get",
    "made",
    "down",
    "up",
    "off",
    "out",
}
STOP_WORDS: frozenset[str] = frozenset(ENGLISH_STOP_WORDS - _MEANINGFUL_IN_ERRORS)

# Qovery's framing: a section for the platform team (execution id, scope, rollback message), a
# dashed rule, then the user's section whose "Need help" line is the same support text everywhere.
_TEAM_SECTION = re.compile(r"\A.*?message for the user[^\n]*(?:\n|\Z)", re.I | re.S)
_SCOPE_NAME = re.compile(r"scope:[^'\n]*'([^'\n]+)'(?:\s+with id\s+'([^'\n]+)')?", re.I)
_NEED_HELP_LINE = re.compile(r"^[^\n]*need help:[^\n]*$", re.I | re.M)
# The labels follow an emoji, and some emoji (ℹ) count as letters to `re`: allow a few characters.
_SECTION_LABEL = re.compile(r"^[^\n]{0,6}?(?:error message|hint):\s*", re.I | re.M)
_RULE_LINE = re.compile(r"-{5,}")
_HINT = re.compile(r"^[^\n]{0,6}?hint:[ \t]*(.*)\Z", re.I | re.M | re.S)

# Variable parts, each replaced by a word naming its kind, so that messages that differ only in
# them become the same text. Most specific first: a URL holds a path, a UUID holds hex.
_REDACTED = re.compile("<(" + "|".join(sorted(SECRET_KINDS)) + ")>")
WILDCARD_WORD = "var"
_REDACTED_WORD = {"ip_address": " ip ", "email": " email "}
VARIABLE_PARTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("url", re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"()<>]+", re.I)),
    ("id", re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?:-\d+)*\b", re.I)),
    (
        "time",
        re.compile(
            r"\b\d{4}-\d{2}-\d{2}(?:[t ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:z|[+-]\d{2}:?\d{2})?)?\b", re.I
        ),
    ),
    ("path", re.compile(r"(?<![\w/.])(?:~|\.{1,2})?(?:/[\w.@+-]+)+/?")),
    (
        "host",
        re.compile(
            r"\b(?:[a-z0-9-]+\.)+(?:com|net|org|io|dev|app|co|cloud|sh|ai|eu|fr|de|uk|us|internal|local|svc)\b",
            re.I,
        ),
    ),
    (
        "quantity",
        re.compile(
            r"\b\d+(?:\.\d+)?(?:%|\s?(?:[kmgtp]i?b?|bytes?|[mun]?s|secs?|seconds?|mins?|minutes?|h|hours?)\b)",
            re.I,
        ),
    ),
    ("hash", re.compile(r"\b(?:0x[0-9a-f]+|(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,})\b", re.I)),
    ("id", re.compile(r"\b(?=[a-z_]*\d)(?=\d*[a-z])[a-z0-9_]{5,}\b", re.I)),
)
PLACEHOLDER_WORDS: frozenset[str] = frozenset(
    {"ip", "email", "secret", "app", WILDCARD_WORD} | {word for word, _ in VARIABLE_PARTS}
)

_NUMBERS = re.compile(r"\d+")
_PUNCTUATION = re.compile(r"[^\w\s]|_")
_WHITESPACE = re.compile(r"\s+")


def strip_framing(message: str) -> str:
    """The part of a framed message a user reads: error message and hint, without the support text.

    Messages without the framing come back unchanged. The application named in the team section's
    scope line is replaced by `app` wherever it appears, since every message names its own.
    """
    scope = _SCOPE_NAME.search(message)
    text = _TEAM_SECTION.sub("", message, count=1)
    text = _NEED_HELP_LINE.sub("", text)
    text = _SECTION_LABEL.sub("", text)
    text = _RULE_LINE.sub(" ", text)
    if scope:
        for value, word in zip(scope.groups(), ("app", "id"), strict=True):
            if value:
                text = _replace_name(text, value, word)
    return text.strip()


_NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def _replace_name(text: str, name: str, word: str) -> str:
    """Every whole-word occurrence of `name` in `text`, in any case, replaced by `word`.

    On ASCII text (what the framing leaves, nearly always) a search of the lowercased text, which is
    what the regex does there but several times faster; elsewhere the regex, for Unicode's cases.
    """
    if not name or not (text.isascii() and name.isascii()):
        return re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w-])", word, text, flags=re.I)
    folded_text, folded_name, end_of_text = text.lower(), name.lower(), len(text)
    pieces, kept_from, at = [], 0, folded_text.find(folded_name)
    while at != -1:
        after = at + len(name)
        if (at == 0 or text[at - 1] not in _NAME_CHARACTERS) and (
            after == end_of_text or text[after] not in _NAME_CHARACTERS
        ):
            pieces += [text[kept_from:at], word]
            kept_from = after
            at = folded_text.find(folded_name, after)
        else:
            at = folded_text.find(folded_name, at + 1)
    return "".join(pieces) + text[kept_from:] if pieces else text


def extract_hint(message: str) -> str:
    """The framing's hint (the engine's diagnosis, the last section), or "" when there is none."""
    found = _HINT.search(message)
    return found.group(1).strip() if found else ""


def mask_variable_parts(text: str, placeholder: str | None = None) -> str:
    """Replace URLs, ids, timestamps, paths, host names and hex by the word for their kind.

    With `placeholder` set (for display, e.g. `<*>`), every kind is replaced by it instead.
    """
    text = _REDACTED.sub(lambda m: placeholder or _REDACTED_WORD.get(m.group(1), " secret "), text)
    # A template's wildcard is a word of its own: `rhost=<*>` and `rhost=<*> <*>` are two templates.
    text = text.replace(WILDCARD, placeholder or f" {WILDCARD_WORD} ")
    for word, pattern in VARIABLE_PARTS:
        text = pattern.sub(placeholder or f" {word} ", text)
    return text


def lowercase(messages: pd.Series) -> pd.Series:
    return messages.str.lower()


def remove_platform_boilerplate(messages: pd.Series) -> pd.Series:
    """Drop the framing and mask the variable parts (the boilerplate rules)."""
    return messages.map(lambda message: mask_variable_parts(strip_framing(message)))


def remove_numbers(messages: pd.Series) -> pd.Series:
    return messages.str.replace(_NUMBERS, "", regex=True)


def remove_punctuation(messages: pd.Series) -> pd.Series:
    # A space, not nothing: `beta-build` is two words, not `betabuild`.
    return messages.str.replace(_PUNCTUATION, " ", regex=True)


def remove_stop_words(messages: pd.Series) -> pd.Series:
    # Single letters are what punctuation leaves of contractions (`can't` -> `can t`).
    return messages.map(
        lambda text: " ".join(word for word in text.split() if len(word) > 1 and word not in STOP_WORDS)
    )


def remove_whitespace(messages: pd.Series) -> pd.Series:
    return messages.str.replace(_WHITESPACE, " ", regex=True).str.strip()


def remove_unicode(messages: pd.Series) -> pd.Series:
    """Fold accents to ASCII (`é` -> `e`) and drop what has no ASCII form (emoji)."""
    folded = messages.map(
        lambda text: (
            unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
            if not text.isascii()
            else text
        )
    )
    return remove_whitespace(folded)


def is_non_empty(messages: pd.Series) -> pd.Series:
    return messages.str.len() > 0


CLEANING_STEPS = (
    lowercase,
    remove_platform_boilerplate,
    remove_numbers,
    remove_punctuation,
    remove_stop_words,
    remove_whitespace,
    remove_unicode,
)


def clean_messages(messages: pd.Series) -> pd.Series:
    """Run every cleaning step in order; an empty result means nothing but boilerplate was left."""
    cleaned = messages.astype(str)
    for step in CLEANING_STEPS:
        cleaned = step(cleaned)
    return cleaned


def build_corpus(
    events: pd.DataFrame,
    template_similarity: float = DEFAULT_SIMILARITY,
    max_constant_values: int = DEFAULT_MAX_CONSTANT_VALUES,
) -> pd.DataFrame:
    """The flattened events with `error_text` (what the user reads), `template`, `cleaned` and `hint`.

    `template` is the message's template with `<*>` for its variable parts (see
    `faultline.templates`); `cleaned` is that template through the cleaning steps, the text the
    vectorizer sees, so cleaning runs once per template rather than once per message. `has_text` is
    False where cleaning left nothing (the seed's non-empty step); such events stay in the corpus
    so every error event is counted, but they are not vectorized.
    """
    corpus = events.copy()
    corpus["error_text"] = corpus["message"].astype(str).map(strip_framing)
    tokens = corpus["error_text"].map(template_tokens)
    template_of = mine_templates(tokens.value_counts().to_dict(), template_similarity, max_constant_values)
    corpus["template"] = tokens.map(template_of).astype(object)
    templates = pd.Series(sorted(set(template_of.values())), dtype=object)
    cleaned = clean_messages(templates)
    # A template of nothing but variables (`---- <*>`) says nothing about the error.
    cleaned[cleaned.str.fullmatch(rf"(?:{WILDCARD_WORD}\s*)*")] = ""
    cleaned_of = dict(zip(templates, cleaned, strict=True))
    corpus["cleaned"] = corpus["template"].map(cleaned_of).fillna("").astype(object)
    corpus["has_text"] = is_non_empty(corpus["cleaned"])
    hints = corpus["message"].astype(str).map(extract_hint)
    distinct_hints = pd.Series(hints.unique(), dtype=object)
    corpus["hint"] = hints.map(dict(zip(distinct_hints, clean_messages(distinct_hints), strict=True)))
    return corpus
