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
from collections import Counter, defaultdict
from itertools import chain, islice

from faultline.caching import BoundedCache

WILDCARD = "<*>"
# Drain3's default similarity threshold is 0.4; 0.6 was chosen leaving one loghub system out at a
# time (bench/accuracy_loso.py): with values and their units folded, messages of one event match in
# most positions.
DEFAULT_SIMILARITY = 0.6
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
# A word with a short number at its end names a kind, not a value: `socks5`, `ipv4`, `eth0`, `alt0`,
# `sha256`, `http2`. Ids carry longer numbers (`c9063558`, `blk_-160899`) or start with them.
_NAMED_KIND = re.compile(r"[a-z]{2,}\d{1,3}")
_CLOCK = re.compile(r"\d\d:\d\d:\d\d")  # what every asctime date holds, found at C speed

Tokens = tuple[str, ...]


def _variable_parts_replaced(token: str) -> str:
    """The token with its variable parts as `<*>`."""
    pieces = _DELIMITERS.split(token)
    # split() with a captured group alternates parts (even places) and the delimiters between them.
    pieces[::2] = [
        WILDCARD
        if part
        and ((_VARIABLE_MARK.search(part) and not _NAMED_KIND.fullmatch(part)) or _HOST_NAME.fullmatch(part))
        else part
        for part in pieces[::2]
    ]
    return "".join(pieces)


# Words recur across messages, so each is done once; a long token (a path, a blob) rarely recurs,
# and caching it would only hold memory.
_templated_tokens = BoundedCache(_variable_parts_replaced, max_entries=65_536, max_key_length=200)


# Words that give a number its unit: a value and its unit are one variable, `18846 bytes`,
# `(18.4 kb)` and `<1 sec` alike, so that values written with or without a unit, or a second unit in
# brackets, make one template.
_UNITS = frozenset(
    "b kb mb gb tb pb kib mib gib tib byte bytes bit bits kbps mbps gbps bps ms us ns s sec secs "
    "second seconds min mins minute minutes hr hrs hour hours day days % percent".split()
)
# What may close a token after its word: brackets and the punctuation of a list or sentence.
_TRAILING = ")],;:.!?"
_PUNCTUATION = ",;:.!?"
# A token of variables and the delimiters between them alone (`<*>:<*>`, `(<*>)`, `[<*>-<*>]`) is
# one variable: a time as `00:01` or `<1`, an address as `host:port` or `host`.
_VARIABLES = r"<\*>(?:[-:./_x]*<\*>)*"
_ONLY_VARIABLES = re.compile(rf"{_VARIABLES}|\({_VARIABLES}\)|\[{_VARIABLES}\]")


def _one_variable(token: str) -> str:
    """The token as one `<*>` (keeping a closing comma or semicolon) if it holds variables only."""
    end = len(token.rstrip(_PUNCTUATION))
    if _ONLY_VARIABLES.fullmatch(token, 0, end):
        return WILDCARD + token[end:]
    return token


# Where folding could change anything (a superset: a value then a unit, a token of variables and
# delimiters, two variables in a row), found at C speed so that most lines skip the loop below.
_FOLDABLE = re.compile(
    r"<\*> (?:"
    + "|".join(re.escape(unit) for unit in sorted(_UNITS, key=len, reverse=True))
    + r")[)\],;:.!?]*(?: |$)"
    + r"|(?:^| )(?:[(\[]<\*>|<\*>[-:./_x]*<\*>)|(?:^| )<\*> <\*>"
)


def fold_variable_runs(tokens: list[str]) -> Tokens:
    """The tokens with each value and its units one `<*>`, and runs of `<*>` one `<*>`.

    Variable parts spanning a varying number of tokens (`403 bytes` against `2933 bytes (2.86 kb)`,
    `lifetime 00:01` against `lifetime <1 sec`, a list of node names) would otherwise make templates
    of different lengths, which Drain never compares.
    """
    if _FOLDABLE.search(" ".join(tokens)) is None:
        return tuple(tokens)
    folded: list[str] = []
    for token in tokens:
        if folded and folded[-1].endswith(WILDCARD):
            word = token.rstrip(_TRAILING)
            if word in _UNITS:  # the previous value's unit: one variable with it
                token = folded.pop() + token[len(word) :]
        if WILDCARD in token:  # (only a token holding a variable can be one, or join a run)
            token = _one_variable(token)
            if folded and folded[-1] == WILDCARD and token.rstrip(_PUNCTUATION) == WILDCARD:
                folded.pop()  # a run of variables is one
        folded.append(token)
    return tuple(folded)


def _line_tokens(line: str) -> tuple[bool, Tokens]:
    """Whether the line holds a clock, and else its tokens."""
    folded = line.lower()
    if _CLOCK.search(folded):
        return True, ()
    get = _templated_tokens.get
    return False, fold_variable_runs([get(token) or _templated_tokens[token] for token in folded.split()])


# A message's lines recur (its hint, a common error), so each line is done once too.
_templated_lines = BoundedCache(_line_tokens, max_entries=16_384, max_key_length=500)


def template_tokens(text: str) -> Tokens:
    """The message's tokens for template mining, with its evidently variable parts as `<*>`.

    Line by line, which gives the tokens of the whole text (a line break is whitespace), except where
    a clock is: an asctime date may run over a line break, so such text is done whole. Values and
    their units are folded within a line (`fold_variable_runs`): each line's result is cached, and
    folding the whole text again for every message would cost more than all the rest.
    """
    get = _templated_lines.get
    lines = [get(line) or _templated_lines[line] for line in text.split("\n")]
    if any(clock for clock, _ in lines):
        text = _ASCTIME.sub(WILDCARD, text.lower())
        get_token = _templated_tokens.get
        return fold_variable_runs([get_token(token) or _templated_tokens[token] for token in text.split()])
    return lines[0][1] if len(lines) == 1 else tuple(chain.from_iterable(tokens for _, tokens in lines))


# A message is compared with the templates of its shape that hold its token at one of a few
# positions, found in an index; past this many such templates at one position, with the most
# recently made ones only (as Drain3 keeps its most recently used), so that a day of many
# templates sharing tokens cannot make mining quadratic. No loghub system comes near it.
_MAX_TEMPLATES_PER_TOKEN = 2_000


class _Shape:
    """The templates of one shape (token count, first token), and where each holds which token.

    Drain compares a message with every template of its shape and joins the one that matches it in
    the most positions (the first made, of those as good), if in at least `similarity` of them. To
    match in that many, a template must hold the message's token at one of any `k - needed + 1` of
    the message's `k` positions that are not wildcards (`needed` positions must match, and the other
    `needed - 1` cannot hold them all). So only the templates found under the message's rarest
    tokens are compared, and only those holding enough of them: the same choice as comparing all,
    at the cost of the templates that share the message's rarest tokens, not of every template.
    """

    def __init__(self, length: int, similarity: float) -> None:
        # The fewest matching positions that make a share of `similarity`, as Drain computes it (an
        # empty list matches an empty template wholly).
        self.needed = next((same for same in range(1, length + 1) if same / length >= similarity), 0)
        self.templates: list[list[str]] = []
        self.members: list[list[Tokens]] = []
        # Per position, per token, the templates holding that token there, oldest first.
        self.holding: list[dict[str, dict[int, None]]] = [{} for _ in range(length)]

    def add(self, tokens: Tokens) -> None:
        """Join the template that matches best, or make a new one."""
        best = self._best_match(tokens)
        if best is None:
            template = len(self.templates)
            self.templates.append(list(tokens))
            self.members.append([tokens])
            for position, token in enumerate(tokens):
                if token != WILDCARD:
                    self.holding[position].setdefault(token, {})[template] = None
            return
        known_tokens = self.templates[best]
        for position, (known, token) in enumerate(zip(known_tokens, tokens, strict=True)):
            if known != token and known != WILDCARD:
                known_tokens[position] = WILDCARD
                holders = self.holding[position][known]
                del holders[best]
                if not holders:
                    del self.holding[position][known]
        self.members[best].append(tokens)

    def _best_match(self, tokens: Tokens) -> int | None:
        if not tokens:
            return 0 if self.templates else None
        lists = []
        for position, (token, holding) in enumerate(zip(tokens, self.holding, strict=True)):
            holders = holding.get(token)
            if holders:  # (no template holds a wildcard)
                lists.append((len(holders), position, holders))
        # The rarest positions of which a match holds at least one: the positions no template holds
        # are the rarest, and of the others, enough to leave `needed - 1`.
        enough = len(lists) - self.needed + 1
        if enough <= 0:
            return None
        lists.sort()
        # Count matches over more of the rarest positions while each costs no more than those that
        # must be counted: a template then needs more of them to be worth comparing.
        cost = sum(size for size, _, _ in lists[:enough])
        while enough < len(lists) and lists[enough][0] <= cost:
            enough += 1
        rest = [position for _, position, _ in lists[enough:]]
        hits = Counter(
            chain.from_iterable(
                islice(reversed(holders), _MAX_TEMPLATES_PER_TOKEN)
                if size > _MAX_TEMPLATES_PER_TOKEN
                else holders
                for size, _, holders in lists[:enough]
            )
        )
        worth_comparing = self.needed - len(rest)
        best, best_same = None, self.needed - 1
        for template in sorted(template for template, same in hits.items() if same >= worth_comparing):
            known_tokens = self.templates[template]
            same = hits[template] + sum(1 for position in rest if known_tokens[position] == tokens[position])
            if same > best_same:
                best, best_same = template, same
        return best


def _drain(token_counts: dict[Tokens, int], similarity: float) -> list[list[Tokens]]:
    """Drain's grouping: the token lists of each template, frequent lists seeding the templates."""
    shapes: dict[tuple[int, str], _Shape] = {}
    for tokens, _ in sorted(token_counts.items(), key=lambda item: (-item[1], item[0])):
        key = (len(tokens), tokens[0] if tokens else "")
        shape = shapes.get(key)
        if shape is None:
            shape = shapes[key] = _Shape(len(tokens), similarity)
        shape.add(tokens)
    return [members for shape in shapes.values() for members in shape.members]


def _split_few_valued(members: list[Tokens], max_constant_values: int) -> list[list[Tokens]]:
    """The template's token lists, split by every position that takes 2..max values (fewest first).

    Splitting a group by the position of fewest values, then each part the same way, counts each
    part's values at every position. The largest part takes its parent's counts, less the other
    parts' lists; only the others are counted anew, so a list is counted again only in a part at most
    half its parent's size: at most log2 of the template's lists times, not once per split.
    """
    if len(members) < 2 or max_constant_values < 2:
        return [members]
    parts: list[list[Tokens]] = []
    groups = [(members, [Counter(column) for column in zip(*members, strict=True)])]
    while groups:
        group, values = groups.pop()
        best_position, best_values = None, max_constant_values + 1
        for position, counts in enumerate(values):
            if 1 < len(counts) < best_values and not any(WILDCARD in value for value in counts):
                best_position, best_values = position, len(counts)
        if best_position is None:
            parts.append(group)
            continue
        by_value: dict[str, list[Tokens]] = defaultdict(list)
        for tokens in group:
            by_value[tokens[best_position]].append(tokens)
        largest = max(by_value.values(), key=len)
        for part in by_value.values():
            if part is largest:
                continue
            for tokens in part:
                for counts, token in zip(values, tokens, strict=True):
                    counts[token] -= 1
                    if not counts[token]:
                        del counts[token]
            groups.append((part, [Counter(column) for column in zip(*part, strict=True)]))
        groups.append((largest, values))
    return parts


def _common_token(values: set[str]) -> str:
    """What differing words at one position have in common: their shared parts, where all are built
    alike (`user=guest`, `user=test`: `user=<*>`), else `<*>`."""
    pieces = [_DELIMITERS.split(value) for value in values]
    first = pieces[0]
    if len(first) == 1 or any(len(other) != len(first) or other[1::2] != first[1::2] for other in pieces[1:]):
        return WILDCARD
    return "".join(
        piece if index % 2 or all(other[index] == piece for other in pieces[1:]) else WILDCARD
        for index, piece in enumerate(first)
    )


def _template_text(members: list[Tokens]) -> str:
    first = members[0]
    if len(members) == 1:
        return " ".join(first)
    return " ".join(
        token if len(values := {tokens[position] for tokens in members}) == 1 else _common_token(values)
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
