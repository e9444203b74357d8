"""Cleaning: error messages become short normalized texts that a vectorizer can compare.

The steps are Qovery's eight (lowercase, numbers, punctuation, stop words, whitespace, platform
boilerplate, unicode, non-empty). One change of order: the boilerplate rules run second, before
numbers and punctuation are stripped, because they need the message's structure (the framing's
lines, the punctuation that makes a URL, a path or an IP address) to find what to remove.

Platform rules are a profile, chosen by name (`CleaningConfig.profile`): what a platform wraps
around its messages and what it adds to them. `qovery` (the default) takes apart Qovery's framing
(the team's section up to "message for the user", "Need help" lines, section labels, dashed rules),
reads the framing's `Hint:` (which merges clusters sharing it, see faultline/clustering.py) and
names the application of the scope line `app`. `generic` keeps a message as it is written (a
"hint:" line is text like any other) and gives no hint. Either way the masks of URLs, ids, paths,
hosts, numbers and timestamps and the templates apply. To add a platform: a function from a raw
message to (the text a user reads, the hint or ""), registered in PROFILES under its name; it must
be a module-level function, as the profile's name is what reaches worker processes.
"""

import array
import functools
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import re2

from faultline.caching import BoundedCache
from faultline.redaction import SECRET_KINDS
from faultline.templates import (
    DEFAULT_MAX_CONSTANT_VALUES,
    DEFAULT_SIMILARITY,
    WILDCARD,
    Tokens,
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


@functools.cache
def stop_words() -> frozenset[str]:
    """scikit-learn's English list less the words above. Loaded on first use: importing scikit-learn
    takes most of a second, which the processes that only read the events' parts need not pay."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS - _MEANINGFUL_IN_ERRORS)


# Rules that Python's backtracking `re` would run in time quadratic in their input (each position
# of a long run of label characters, `a.a.a...`, rescanned the run to its end) run on RE2, whose
# time is linear in the text. RE2's \s, \w and \b are ASCII-only and its case folding misses two
# letters that `re.I` folds to `i`, so these rules spell out what they meant under `re`: Python's
# whitespace (`str.isspace`, as a test holds it), its word characters (`_python_word_characters`),
# `[a-z]` under `re.I` with ı and İ, and `\b` as a character consumed before the match (the start
# of the text, or one of the other kind). RE2 searches the text as UTF-8 bytes, encoded once per
# call: its Python API encodes a `str` anew at every search.
_RE2_SPACE = (
    r"\t-\r\x{1c}-\x{20}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}"
)
_RE2_WORD = "<word characters>"  # in a rule's pattern, where `_python_word_characters` go
_RE2_LETTER_I = r"i\x{130}\x{131}"  # what `re.I` folds to i: I, İ and the dotless ı


@functools.cache
def _python_word_characters() -> str:
    r"""What `re` takes for `\w`, as the ranges of an RE2 class: letters and numbers by Python's own
    Unicode tables, which may be older than RE2's (`\pL` would take letters Python does not know yet
    for word characters). Found once per process, by `re` itself over every code point."""
    points = array.array("I", range(0x110000))
    points[0xD800:0xE000] = array.array("I", [0x20]) * 0x800  # surrogates, never word characters
    every = points.tobytes().decode("utf-32-le")
    return "".join(rf"\x{{{m.start():x}}}-\x{{{m.end() - 1:x}}}" for m in re.finditer(r"\w+", every))


def _re2_ignoring_case(pattern: str) -> str:
    """`pattern` (letters, `-` and `.`) as RE2 matches it the way `re.I` does."""
    return "(?i:" + pattern.replace("i", f"[{_RE2_LETTER_I}]") + ")"


def _utf8(text: str) -> bytes:
    # A lone surrogate (a JSON `\ud83d` without its pair) is one character to `re`; RE2 reads its
    # three bytes as one character too.
    return text.encode("utf-8", "surrogatepass")


def _from_utf8(data: bytes) -> str:
    return data.decode("utf-8", "surrogatepass")


def _holds(text: str, needs: str | re.Pattern[str]) -> bool:
    return needs in text if isinstance(needs, str) else needs.search(text) is not None


class ReRule:
    """A rule run by `re`; `needs` is a literal (or a pattern) every match holds: a text without it
    is returned at once, after one scan at C speed rather than the rule's."""

    def __init__(self, pattern: re.Pattern[str], needs: str | re.Pattern[str]) -> None:
        self.pattern, self.needs = pattern, needs

    def sub(self, replacement: str, text: str) -> str:
        return self.pattern.sub(replacement, text) if _holds(text, self.needs) else text


class Re2Rule:
    r"""A rule run by RE2, as `re.Pattern.sub` would run it: every match of the groups named `body`
    (one per alternative; the pattern may consume one character on each side of a body, for `\b`)
    replaced, left to right. The next search starts where the body ended, so a character the
    pattern consumed after one body can stand before the next. `needs` as for `ReRule`."""

    def __init__(self, pattern: str, needs: str | re.Pattern[str]) -> None:
        self.source, self.needs = pattern, needs

    @functools.cached_property
    def pattern(self) -> re2._Regexp:
        # Compiled at the first use, as the word characters are found then.
        return re2.compile(self.source.replace(_RE2_WORD, _python_word_characters()))

    @functools.cached_property
    def _bodies(self) -> list[int]:
        return [index for name, index in self.pattern.groupindex.items() if name.startswith("body")]

    def sub(self, replacement: str, text: str) -> str:
        if not _holds(text, self.needs):
            return text
        data = _utf8(text)
        pieces, kept_from, searched_from = [], 0, 0
        while (match := self.pattern.search(data, searched_from)) is not None:
            start, end = next((span for span in map(match.span, self._bodies) if span[0] >= 0), match.span())
            pieces.append(data[kept_from:start])
            kept_from = searched_from = end
        if not pieces:
            return text
        pieces.append(data[kept_from:])
        return _from_utf8(_utf8(replacement).join(pieces))


# Qovery's framing: a section for the platform team (execution id, scope, rollback message), a
# dashed rule, then the user's section whose "Need help" line is the same support text everywhere.
# Each pattern but the scope's finds its match within one line, so the framing is taken apart line
# by line, and the lines that recur (all but the error message and the execution id) are judged once.
_TEAM_SECTION_END = re.compile(r"message for the user", re.I)  # the line that ends the team section
_NEED_HELP_LINE = re.compile(r"^[^\n]*need help:[^\n]*$", re.I | re.M)
# The labels follow an emoji, and some emoji (ℹ) count as letters to `re`: allow a few characters.
_SECTION_LABEL = re.compile(r"^[^\n]{0,6}?(?:error message|hint):\s*", re.I | re.M)
_RULE_LINE = re.compile(r"-{5,}")
_HINT_LABEL = re.compile(r"[^\n]{0,6}?hint:[ \t]*", re.I)  # the hint is all that follows it
# The scope line, `scope:[^'\n]*'([^'\n]+)'(?:\s+with id\s+'([^'\n]+)')?` under re.I, is found in
# code (`scope_names`): as one regex, `re` rescanned the line to its end from every `scope:` on it.
_SCOPE_LABEL = re.compile(r"scope:", re.I)
_SCOPE_ID = re.compile(r"\s+with id\s+'([^'\n]+)'", re.I)


# Variable parts, each replaced by a word naming its kind, so that messages that differ only in
# them become the same text. Most specific first: a URL holds a path, a UUID holds hex.
_REDACTED = re.compile("<(" + "|".join(sorted(SECRET_KINDS)) + ")>")
WILDCARD_WORD = "var"
_REDACTED_WORD = {"ip_address": " ip ", "email": " email "}
_TOP_LEVEL_DOMAINS = "com|net|org|io|dev|app|co|cloud|sh|ai|eu|fr|de|uk|us|internal|local|svc"
_HOST_LABEL = f"[a-z0-9{_RE2_LETTER_I}-]"
_HOST_END = rf"(?i:{_HOST_LABEL}*\.(?:{_HOST_LABEL}+\.)*){_re2_ignoring_case(_TOP_LEVEL_DOMAINS)}"
_DIGIT = re.compile(r"\d")  # what all but the URL, UUID, path and host rules need: Unicode's digits
VARIABLE_PARTS: tuple[tuple[str, ReRule | Re2Rule], ...] = (
    # r"\b[a-z][a-z0-9+.-]*://[^\s'\"()<>]+" under re.I.
    (
        "url",
        Re2Rule(
            rf"(?:^|[^{_RE2_WORD}])(?P<body>(?i:[a-z{_RE2_LETTER_I}][a-z0-9+.{_RE2_LETTER_I}-]*)://"
            rf"[^{_RE2_SPACE}'\"()<>]+)",
            needs="://",
        ),
    ),
    (
        "id",
        ReRule(
            re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?:-\d+)*\b", re.I),
            needs="-",
        ),
    ),
    (
        "time",
        ReRule(
            re.compile(
                r"\b\d{4}-\d{2}-\d{2}(?:[t ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:z|[+-]\d{2}:?\d{2})?)?\b", re.I
            ),
            needs=_DIGIT,
        ),
    ),
    ("path", ReRule(re.compile(r"(?<![\w/.])(?:~|\.{1,2})?(?:/[\w.@+-]+)+/?"), needs="/")),
    # r"\b(?:[a-z0-9-]+\.)+(?:com|net|...|svc)\b" under re.I; `\b` before its first character is a
    # non-word character (or the start) before a word character, and a word character before `-`.
    (
        "host",
        Re2Rule(
            rf"(?:(?:^|[^{_RE2_WORD}])(?P<body>(?i:[a-z0-9{_RE2_LETTER_I}]){_HOST_END})"
            rf"|[{_RE2_WORD}](?P<body_after_word>-{_HOST_END}))(?:$|[^{_RE2_WORD}])",
            needs=".",
        ),
    ),
    (
        "quantity",
        ReRule(
            re.compile(
                r"\b\d+(?:\.\d+)?(?:%|\s?(?:[kmgtp]i?b?|bytes?|[mun]?s|secs?|seconds?|mins?|minutes?|h|hours?)\b)",
                re.I,
            ),
            needs=_DIGIT,
        ),
    ),
    (
        "hash",
        ReRule(
            re.compile(r"\b(?:0x[0-9a-f]+|(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,})\b", re.I),
            needs=_DIGIT,
        ),
    ),
    ("id", ReRule(re.compile(r"\b(?=[a-z_]*\d)(?=\d*[a-z])[a-z0-9_]{5,}\b", re.I), needs=_DIGIT)),
)
PLACEHOLDER_WORDS: frozenset[str] = frozenset(
    {"ip", "email", "secret", "app", WILDCARD_WORD} | {word for word, _ in VARIABLE_PARTS}
)

_NUMBERS = re.compile(r"\d+")
_PUNCTUATION = re.compile(r"[^\w\s]|_")
_WHITESPACE = re.compile(r"\s+")


def _framing_line(line: str) -> tuple[bool, bool, int, str, bool]:
    """What the framing's patterns find in one line: whether it ends the team section; whether it
    holds the hint's label, and where the hint starts after it; the line as the user's section keeps
    it; whether its label's trailing whitespace reaches the end of the line (and could go on)."""
    # Plain substring checks where they find what the case-insensitive patterns find: no character
    # outside ASCII matches these letters under re.I but the long s (ſ, an "s"), whose lines go
    # through the pattern; and lowering only turns İ and the Kelvin sign into ASCII (i, k), which
    # these words do not hold.
    folded = line.lower()
    if "\u017f" in line:
        ends_team_section = _TEAM_SECTION_END.search(line) is not None
    else:
        ends_team_section = "message for the user" in folded
    hint_label = _HINT_LABEL.match(line) if "hint:" in folded or not line.isascii() else None
    kept = "" if "need help:" in folded else line
    label = _SECTION_LABEL.match(kept)
    if label:
        kept = kept[label.end() :]
    return (
        ends_team_section,
        hint_label is not None,
        hint_label.end() if hint_label else -1,
        _RULE_LINE.sub(" ", kept) if "-----" in kept else kept,
        label is not None and not kept,
    )


_framing_lines = BoundedCache(_framing_line, max_entries=16_384, max_key_length=500)


def _user_text_and_hint(message: str) -> tuple[str, str]:
    r"""The user's section without its labels, support line and rules; and the hint.

    Line by line, what these regexes give on the whole text: the team section is everything up to
    and including the first line naming "message for the user"; then the support line is emptied,
    each line's label dropped and each dashed rule made a space. One case spans lines: a label
    followed by nothing but whitespace, which the label's `\s*` extends into the next line; that
    text goes through the regexes whole.
    """
    lines = message.split("\n")
    get = _framing_lines.get
    ends_team, has_hint, hint_starts, kept, runs_on = zip(
        *[get(line) or _framing_lines[line] for line in lines], strict=True
    )
    first = ends_team.index(True) + 1 if True in ends_team else 0
    if True in runs_on[first:-1]:
        text = "\n".join(lines[first:])
        text = _RULE_LINE.sub(" ", _SECTION_LABEL.sub("", _NEED_HELP_LINE.sub("", text)))
    else:
        text = "\n".join(kept[first:])
    if True not in has_hint:
        return text, ""
    hint = has_hint.index(True)
    return text, "\n".join([lines[hint][hint_starts[hint] :], *lines[hint + 1 :]]).strip()


def user_text_and_hint(message: str) -> tuple[str, str]:
    """`strip_framing(message)` and `extract_hint(message)`, the message's lines split once."""
    text, hint = _user_text_and_hint(message)
    return _named_by_their_kind(message, text), hint


def strip_framing(message: str) -> str:
    """The part of a framed message a user reads: error message and hint, without the support text.

    Messages without the framing come back unchanged. The application named in the team section's
    scope line is replaced by `app` wherever it appears, since every message names its own.
    """
    return user_text_and_hint(message)[0]


def scope_names(message: str) -> tuple[str, str | None] | None:
    """The application and id the first scope line names: `scope: ... 'name'`, then maybe
    `with id 'id'`, as the regex in the comment above finds them, in time linear in the message.

    From a `scope:`, the name is between the first quote after it on its line and the next; where
    that fails, it fails from every `scope:` up to that quote too, so the search goes on after it.
    """
    at = 0
    while (label := _SCOPE_LABEL.search(message, at)) is not None:
        line_end = message.find("\n", label.end())
        line_end = len(message) if line_end == -1 else line_end
        opening = message.find("'", label.end(), line_end)
        if opening == -1:
            at = line_end
            continue
        closing = message.find("'", opening + 1, line_end)
        if closing == -1:
            at = line_end
        elif closing == opening + 1:
            at = opening + 1
        else:
            identified = _SCOPE_ID.match(message, closing + 1)
            return message[opening + 1 : closing], identified.group(1) if identified else None
    return None


def _named_by_their_kind(message: str, text: str) -> str:
    names = scope_names(message)
    if names:
        for value, word in zip(names, ("app", "id"), strict=True):
            if value:
                text = _replace_name(text, value, word)
    return text.strip()


_NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
# Finding a name costs up to its length at each character of the text; a name is at most a DNS
# name's 253 characters, so a longer "name" is not one and is left in the text.
_MAX_NAME_CHARS = 253


def _replace_name(text: str, name: str, word: str) -> str:
    """Every whole-word occurrence of `name` in `text`, in any case, replaced by `word`; a `name`
    longer than `_MAX_NAME_CHARS` is left as it is.

    On ASCII text (what the framing leaves, nearly always) a search of the lowercased text, which is
    what the regex does there but several times faster; elsewhere the regex, for Unicode's cases.
    """
    if len(name) > _MAX_NAME_CHARS:
        return text
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


def first_line(text: str) -> str:
    """The first line of `text` that holds more than whitespace, stripped."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def extract_hint(message: str) -> str:
    """The framing's hint (the engine's diagnosis, the last section), or "" when there is none."""
    return _user_text_and_hint(message)[1]


def mask_variable_parts(text: str, placeholder: str | None = None) -> str:
    """Replace URLs, ids, timestamps, paths, host names and hex by the word for their kind.

    With `placeholder` set (for display, e.g. `<*>`), every kind is replaced by it instead.
    """
    if "<" in text:
        text = _REDACTED.sub(lambda m: placeholder or _REDACTED_WORD.get(m.group(1), " secret "), text)
    # A template's wildcard is a word of its own: `rhost=<*>` and `rhost=<*> <*>` are two templates.
    text = text.replace(WILDCARD, placeholder or f" {WILDCARD_WORD} ")
    for word, pattern in VARIABLE_PARTS:
        text = pattern.sub(placeholder or f" {word} ", text)
    return text


def generic_text_and_hint(message: str) -> tuple[str, str]:
    """A message as it is written, without its surrounding whitespace, and no hint."""
    return message.strip(), ""


@dataclass(frozen=True)
class Profile:
    """A platform's rules for its messages: `user_text_and_hint` gives the text a user reads (the
    platform's framing taken off) and the platform's diagnosis, "" when it gives none."""

    name: str
    user_text_and_hint: Callable[[str], tuple[str, str]]
    description: str


PROFILES: dict[str, Profile] = {
    profile.name: profile
    for profile in (
        Profile(
            "qovery",
            user_text_and_hint,
            "Qovery's engine: framing stripped, its Hint read, the scope line's application named app",
        ),
        Profile("generic", generic_text_and_hint, "any platform: messages as written, no hints"),
    )
}
DEFAULT_PROFILE = "qovery"


def profile_named(name: str) -> Profile:
    """The profile registered as `name`, or a ValueError naming the setting and the choices."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"profile={name!r}: use one of {', '.join(sorted(PROFILES))}") from None


def lowercase(messages: pd.Series) -> pd.Series:
    return messages.str.lower()


def remove_platform_boilerplate(messages: pd.Series, profile: str = DEFAULT_PROFILE) -> pd.Series:
    """Drop the profile's framing and mask the variable parts (the boilerplate rules)."""
    text_of = profile_named(profile).user_text_and_hint
    return messages.map(lambda message: mask_variable_parts(text_of(message)[0]))


def remove_numbers(messages: pd.Series) -> pd.Series:
    return messages.str.replace(_NUMBERS, "", regex=True)


def remove_punctuation(messages: pd.Series) -> pd.Series:
    # A space, not nothing: `beta-build` is two words, not `betabuild`.
    return messages.str.replace(_PUNCTUATION, " ", regex=True)


def remove_stop_words(messages: pd.Series) -> pd.Series:
    # Single letters are what punctuation leaves of contractions (`can't` -> `can t`).
    stop = stop_words()
    return messages.map(
        lambda text: " ".join(word for word in text.split() if len(word) > 1 and word not in stop)
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


def clean_messages(messages: pd.Series, profile: str = DEFAULT_PROFILE) -> pd.Series:
    """Run every cleaning step in order, the boilerplate rules by `profile`; an empty result means
    nothing but boilerplate was left."""
    cleaned = messages.astype(str)
    boilerplate = functools.partial(remove_platform_boilerplate, profile=profile)
    for step in CLEANING_STEPS:
        cleaned = (boilerplate if step is remove_platform_boilerplate else step)(cleaned)
    return cleaned


@dataclass(frozen=True)
class CorpusPart:
    """One part of the events reduced to what grouping needs: each event's variant and hint.

    A variant is a distinct list of template tokens (the user-facing text, evident variables as
    `<*>`): a day of a million messages has a few thousand. Each keeps, for the report, its event
    count, its first raw message and the user-facing text of that message (each cut at
    `_KEPT_TEXT_CHARS`), and the distinct first lines of its first events' user-facing texts (a few,
    so that a label shows as `<*>` what varies within the variant).
    """

    row_id: np.ndarray
    event_index: np.ndarray
    variant: np.ndarray  # position in `variants`
    hint: np.ndarray  # position in `hints`
    variants: list[Tokens]
    variant_counts: list[int]
    variant_messages: list[str]
    variant_texts: list[str]
    variant_lines: list[list[str]]
    hints: list[str]


# What a variant keeps of its events for the report: its first message and user-facing text (the
# report shows 2,000 characters of an example; a message may have 100,000), and up to 8 distinct
# first lines (a label is at most 240 characters), sought among its first 64 events.
_KEPT_TEXT_CHARS = 10_000
_KEPT_LINES, _KEPT_LINE_CHARS, _LINES_SOUGHT_IN = 8, 1_000, 64


def corpus_part(events: pd.DataFrame, profile: str = DEFAULT_PROFILE) -> CorpusPart:
    """Each event's variant and hint, from its `message` (the profile's framing stripped, template
    tokens)."""
    text_and_hint = profile_named(profile).user_text_and_hint
    variant_of: dict[Tokens, int] = {}
    hint_of: dict[str, int] = {}
    counts: list[int] = []
    first_messages: list[str] = []
    first_texts: list[str] = []
    lines: list[list[str]] = []
    variants = np.empty(len(events), dtype=np.int32)
    hints = np.empty(len(events), dtype=np.int32)
    for position, message in enumerate(events["message"].astype(str)):
        text, hint = text_and_hint(message)
        tokens = template_tokens(text)
        variant = variant_of.get(tokens)
        if variant is None:
            variant = variant_of[tokens] = len(counts)
            counts.append(0)
            first_messages.append(message[:_KEPT_TEXT_CHARS])
            first_texts.append(text[:_KEPT_TEXT_CHARS])
            lines.append([])
        counts[variant] += 1
        if counts[variant] <= _LINES_SOUGHT_IN and len(lines[variant]) < _KEPT_LINES:
            line = first_line(text)[:_KEPT_LINE_CHARS]
            if line not in lines[variant]:
                lines[variant].append(line)
        variants[position] = variant
        hints[position] = hint_of.setdefault(hint, len(hint_of))
    return CorpusPart(
        row_id=_column(events, "row_id", np.arange(len(events))),
        event_index=_column(events, "event_index", np.zeros(len(events))),
        variant=variants,
        hint=hints,
        variants=list(variant_of),
        variant_counts=counts,
        variant_messages=first_messages,
        variant_texts=first_texts,
        variant_lines=lines,
        hints=list(hint_of),
    )


def _column(events: pd.DataFrame, name: str, default: np.ndarray) -> np.ndarray:
    return (events[name] if name in events else pd.Series(default)).to_numpy(dtype=np.int64)


VARIANT_COLUMNS = ["template", "cleaned", "has_text", "n_events", "error_text", "message", "first_lines"]
HINT_COLUMNS = ["hint", "cleaned", "n_events"]


@dataclass(frozen=True)
class Corpus:
    """The day's error events as the clustering sees them.

    `events`: one row per error event, in the store's order: `row_id`, `event_index`, `variant`
    (a row of `variants`) and `hint` (a row of `hints`). `variants`: per variant, its `template`
    (`<*>` for the variable parts, see `faultline.templates`), `cleaned` (the template through the
    cleaning steps: the text the vectorizer sees, so cleaning runs once per template, not once per
    message), `has_text` (False where cleaning left nothing: the seed's non-empty step; such events
    stay counted but are not vectorized), `n_events`, its first event's user-facing text
    (`error_text`) and raw (redacted) `message`, and a few distinct first lines of its events'
    user-facing texts (`first_lines`). `hints`: per distinct hint (the framing's last
    section, the engine's diagnosis), the raw text, its cleaned text and `n_events`. `profile`: the
    name of the platform rules it was cleaned by, which the report shows its examples by.
    """

    events: pd.DataFrame
    variants: pd.DataFrame
    hints: pd.DataFrame
    profile: str = DEFAULT_PROFILE

    def per_event(self) -> pd.DataFrame:
        """One row per event with its variant's and hint's columns: for small days and tests."""
        variants = self.variants.add_prefix("variant_")
        hints = self.hints.add_prefix("hint_")
        return self.events.join(variants, on="variant").join(hints, on="hint")


def combine_corpus_parts(
    parts: Iterable[CorpusPart],
    template_similarity: float = DEFAULT_SIMILARITY,
    max_constant_values: int = DEFAULT_MAX_CONSTANT_VALUES,
    profile: str = DEFAULT_PROFILE,
) -> Corpus:
    """The parts as one corpus: variants and hints numbered across parts, templates mined over all,
    cleaned by `profile` (the one the parts were made with)."""
    variant_of: dict[Tokens, int] = {}
    hint_of: dict[str, int] = {}
    counts: list[int] = []
    messages: list[str] = []
    texts: list[str] = []
    lines: list[list[str]] = []
    hint_counts: Counter[int] = Counter()
    events: list[pd.DataFrame] = []
    for part in parts:
        global_variant = np.empty(len(part.variants), dtype=np.int32)
        for local, tokens in enumerate(part.variants):
            variant = variant_of.get(tokens)
            if variant is None:
                variant = variant_of[tokens] = len(counts)
                counts.append(0)
                messages.append(part.variant_messages[local])
                texts.append(part.variant_texts[local])
                lines.append([])
            counts[variant] += part.variant_counts[local]
            kept = lines[variant]
            kept += [line for line in part.variant_lines[local] if line not in kept][
                : _KEPT_LINES - len(kept)
            ]
            global_variant[local] = variant
        global_hint = np.array(
            [hint_of.setdefault(hint, len(hint_of)) for hint in part.hints], dtype=np.int32
        )
        hint_ids = global_hint[part.hint] if len(part.hint) else part.hint
        hint_counts.update(dict(zip(*np.unique(hint_ids, return_counts=True), strict=True)))
        events.append(
            pd.DataFrame(
                {
                    "row_id": part.row_id,
                    "event_index": part.event_index,
                    "variant": global_variant[part.variant] if len(part.variant) else part.variant,
                    "hint": hint_ids,
                }
            )
        )
    template_of = mine_templates(
        dict(zip(variant_of, counts, strict=True)), template_similarity, max_constant_values
    )
    templates = pd.Series([template_of[tokens] for tokens in variant_of], dtype=object)
    distinct = pd.Series(sorted(set(templates)), dtype=object)
    cleaned = clean_messages(distinct, profile)
    # A template of nothing but variables (`---- <*>`) says nothing about the error.
    cleaned[cleaned.str.fullmatch(rf"(?:{WILDCARD_WORD}\s*)*")] = ""
    cleaned_of = dict(zip(distinct, cleaned, strict=True))
    variants = pd.DataFrame(
        {
            "template": templates,
            "cleaned": templates.map(cleaned_of).astype(object),
            "n_events": pd.Series(counts, dtype=np.int64),
            "error_text": pd.Series(texts, dtype=object),
            "message": pd.Series(messages, dtype=object),
            "first_lines": pd.Series([tuple(kept) for kept in lines], dtype=object),
        }
    )
    variants.insert(2, "has_text", variants["cleaned"].str.len() > 0)
    hint_texts = pd.Series(list(hint_of), dtype=object)
    hints = pd.DataFrame(
        {
            "hint": hint_texts,
            "cleaned": clean_messages(hint_texts, profile) if len(hint_texts) else hint_texts,
            "n_events": pd.Series([hint_counts[h] for h in range(len(hint_of))], dtype=np.int64),
        }
    )
    frame = (
        pd.concat(events, ignore_index=True)
        if events
        else pd.DataFrame(
            {name: pd.Series(dtype=np.int64) for name in ("row_id", "event_index", "variant", "hint")}
        )
    )
    return Corpus(
        events=frame, variants=variants[VARIANT_COLUMNS], hints=hints[HINT_COLUMNS], profile=profile
    )


def build_corpus(
    events: pd.DataFrame,
    template_similarity: float = DEFAULT_SIMILARITY,
    max_constant_values: int = DEFAULT_MAX_CONSTANT_VALUES,
    profile: str = DEFAULT_PROFILE,
) -> Corpus:
    """The corpus of events held in memory at once (`message`, and `row_id`, `event_index` if known)."""
    return combine_corpus_parts(
        [corpus_part(events, profile)], template_similarity, max_constant_values, profile
    )
