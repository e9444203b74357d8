"""Template mining: messages that differ only in their variable parts become one template.

Three steps, on the user-facing text of each message (framing stripped, secrets redacted):

1. Tokens. The text is lowercased and split on whitespace, as Drain splits it. Inside each token,
   every part between delimiters (`= : , ; ( ) [ ] { } "` and `'`) that holds a digit, a redaction
   placeholder, a host name or a path becomes the wildcard `<*>`, so `rhost=10.0.0.1` and
   `rhost=c9063558.virtua.com.br` are both `rhost=<*>` while `user=root` stays as it is. Dates in
   C's `asctime` form ("Mon Jun 20 03:40:59 2005") are one variable too.
2. Drain (He et al. 2017, "Drain: An Online Log Parsing Approach with Fixed Depth Tree"). Token
   lists of the same length and first token are compared position by position; a list joins the
   template it matches in at least `similarity` of its positions, and the positions where they
   differ become wildcards. This folds the variable words masking could not name (a user, a
   module, a region).
3. Few-valued positions are constants. A position Drain made a wildcard, whose words take at most
   `max_constant_values` distinct values across the template's messages, splits the template by
   value instead: `cupsd startup succeeded` and `cupsd shutdown succeeded` are two events, not one
   event with a variable; `Failed password for` and `Failed none for` likewise. A variable (a user
   name, a path) takes many values. Positions where any message carries a wildcard stay variable.
"""

import re
from collections import defaultdict
from itertools import chain

from faultline.caching import BoundedCache

WILDCARD = "<*>"
# Drain3's default similarity threshold is 0.4; half the positions is a little stricter.
DEFAULT_SIMILARITY = 0.5
# An enumeration (start/stop/restart, password/publickey/none) rarely has more than three values in
# one message shape; a variable has more. See the README's "Performance" section for the sweep.
DEFAULT_MAX_CONSTANT_VALUES = 3

_ASCTIME = re.compile(
    r"\b(?:mon|tue|wed|thu|fri|sat|sun)\s+(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)\s+"
    r"\d{1,2}\s+\d{2}:\d{2}:\d{2}(?:\s+\d{4})?\b"
)
# A token's parts lie between these delimiters; a part is variable when it holds a digit, a
# redaction placeholder (`<email>`) or a slash, or when all of it is a dotted host name.
_DELIMITERS = re.compile(r"([=:,;()\[\]{}\"']+)")
_VARIABLE_MARK = re.compile(r"\d|/|<[a-z_*]+>")
_HOST_NAME = re.compile(r"(?:[a-z0-9_-]+\.)+[a-z]{2,}")
_CLOCK = re.compile(r"\d\d:\d\d:\d\d")  # what every asctime date holds, found at C speed

Tokens = tuple[str, ...]


def _variable_parts_replaced(token: str) -> str:
    """The token with its variable parts as `<*>`."""
    pieces = _DELIMITERS.split(token)
    # split() with a captured group alternates parts (even places) and the delimiters between them.
    pieces[::2] = [
        WILDCARD if part and (_VARIABLE_MARK.search(part) or _HOST_NAME.fullmatch(part)) else part
        for part in pieces[::2]
    ]
    return "".join(pieces)


# Words recur across messages, so each is done once; a long token (a path, a blob) rarely recurs,
# and caching it would only hold memory.
_templated_tokens = BoundedCache(_variable_parts_replaced, max_entries=65_536, max_key_length=200)


def _line_tokens(line: str) -> tuple[bool, Tokens]:
    """Whether the line holds a clock, and else its tokens."""
    folded = line.lower()
    if _CLOCK.search(folded):
        return True, ()
    get = _templated_tokens.get
    return False, tuple([get(token) or _templated_tokens[token] for token in folded.split()])


# A message's lines recur (its hint, a common error), so each line is done once too.
_templated_lines = BoundedCache(_line_tokens, max_entries=16_384, max_key_length=500)


def template_tokens(text: str) -> Tokens:
    """The message's tokens for template mining, with its evidently variable parts as `<*>`.

    Line by line, which gives the tokens of the whole text (a line break is whitespace), except where
    a clock is: an asctime date may run over a line break, so such text is done whole.
    """
    get = _templated_lines.get
    lines = [get(line) or _templated_lines[line] for line in text.split("\n")]
    if any(clock for clock, _ in lines):
        text = _ASCTIME.sub(WILDCARD, text.lower())
        get_token = _templated_tokens.get
        return tuple([get_token(token) or _templated_tokens[token] for token in text.split()])
    return tuple(chain.from_iterable(tokens for _, tokens in lines))


def _drain(token_counts: dict[Tokens, int], similarity: float) -> list[list[Tokens]]:
    """Drain's grouping: the token lists of each template, frequent lists seeding the templates."""
    templates_by_shape: dict[tuple[int, str], list[tuple[list[str], list[Tokens]]]] = {}
    for tokens, _ in sorted(token_counts.items(), key=lambda item: (-item[1], item[0])):
        candidates = templates_by_shape.setdefault((len(tokens), tokens[0] if tokens else ""), [])
        best, best_share = None, -1.0
        for candidate in candidates:
            same = sum(
                1 for known, token in zip(candidate[0], tokens, strict=True) if known == token != WILDCARD
            )
            share = same / len(tokens) if tokens else 1.0
            if share > best_share:
                best, best_share = candidate, share
        if best is not None and best_share >= similarity:
            template, members = best
            template[:] = [
                known if known == token else WILDCARD for known, token in zip(template, tokens, strict=True)
            ]
            members.append(tokens)
        else:
            candidates.append((list(tokens), [tokens]))
    return [members for candidates in templates_by_shape.values() for _, members in candidates]


def _split_few_valued(members: list[Tokens], max_constant_values: int) -> list[list[Tokens]]:
    """The template's token lists, split by every position that takes 2..max values (fewest first)."""
    best_position, best_values = None, max_constant_values + 1
    for position in range(len(members[0])):
        values = {tokens[position] for tokens in members}
        if 1 < len(values) < best_values and not any(WILDCARD in value for value in values):
            best_position, best_values = position, len(values)
    if best_position is None:
        return [members]
    by_value: dict[str, list[Tokens]] = defaultdict(list)
    for tokens in members:
        by_value[tokens[best_position]].append(tokens)
    return [
        part
        for _, group in sorted(by_value.items())
        for part in _split_few_valued(group, max_constant_values)
    ]


def _template_text(members: list[Tokens]) -> str:
    first = members[0]
    return " ".join(
        token if all(tokens[position] == token for tokens in members) else WILDCARD
        for position, token in enumerate(first)
    )


def mine_templates(
    token_counts: dict[Tokens, int],
    similarity: float = DEFAULT_SIMILARITY,
    max_constant_values: int = DEFAULT_MAX_CONSTANT_VALUES,
) -> dict[Tokens, str]:
    """The template of each distinct token list (distinct tokens -> event count), as text with `<*>`.

    Frequent token lists seed the templates and ties go by the tokens, so the same input gives the
    same templates. `similarity` 1.0 merges nothing; `max_constant_values` 0 or 1 splits nothing.
    """
    if not 0 < similarity <= 1:
        raise ValueError(f"similarity must be in (0, 1], got {similarity}")
    if max_constant_values < 0:
        raise ValueError(f"max_constant_values must be >= 0, got {max_constant_values}")
    template_of: dict[Tokens, str] = {}
    for members in _drain(token_counts, similarity):
        for part in _split_few_valued(members, max_constant_values):
            text = _template_text(part)
            for tokens in part:
                template_of[tokens] = text
    return template_of
