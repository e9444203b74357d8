"""Template mining: messages that differ only in their variable parts share a template."""

import re
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faultline import templates as templates_module
from faultline.templates import (
    _ASCTIME,
    _CLOCK,
    WILDCARD,
    fold_variable_runs,
    mine_templates,
    template_tokens,
)


def mined(*messages: str, repeat: int = 1, **settings) -> dict[str, str]:
    """Each message's template, every message seen `repeat` times."""
    counts: dict[tuple[str, ...], int] = {}
    for message in messages:
        counts[template_tokens(message)] = counts.get(template_tokens(message), 0) + repeat
    templates = mine_templates(counts, **settings)
    return {message: templates[template_tokens(message)] for message in messages}


def test_token_parts_holding_digits_hosts_paths_or_placeholders_become_wildcards():
    assert template_tokens("rhost=10.0.0.1 user=root uid=0") == ("rhost=<*>", "user=root", "uid=<*>")
    assert template_tokens("rhost=c9063558.virtua.com.br") == ("rhost=<*>",)
    assert template_tokens("rhost=mail.example.org") == ("rhost=<*>",)
    assert template_tokens("open /var/lib/app failed") == ("open", "<*>", "failed")
    assert template_tokens("sent to <email>") == ("sent", "to", "<*>")
    # Parentheses and colons delimit parts but stay, so the shape of the token is kept.
    assert template_tokens("LOGIN(uid=0) (uid=509)") == ("login(uid=<*>)", "(uid=<*>)")


def test_an_asctime_date_is_one_wildcard():
    assert template_tokens("connection at Mon Jun 20 03:40:59 2005") == ("connection", "at", "<*>")


def test_a_word_taking_many_values_is_a_variable():
    templates = mined(*(f"no module named {name}" for name in ("flask", "uvicorn", "dotenv", "redis")))
    assert set(templates.values()) == {"no module named <*>"}


def test_a_word_taking_few_values_splits_the_template():
    templates = mined("cupsd startup succeeded", "cupsd shutdown succeeded", repeat=6)
    assert templates == {
        "cupsd startup succeeded": "cupsd startup succeeded",
        "cupsd shutdown succeeded": "cupsd shutdown succeeded",
    }


def test_max_constant_values_zero_keeps_drains_wildcard():
    templates = mined("cupsd startup succeeded", "cupsd shutdown succeeded", max_constant_values=0)
    assert set(templates.values()) == {"cupsd <*> succeeded"}


def test_a_position_where_some_message_has_a_wildcard_stays_variable():
    templates = mined("connection from () at", "connection from (host-7) at", "connection from (x) at")
    assert set(templates.values()) == {"connection from <*> at"}


def test_messages_of_another_length_or_first_word_never_join():
    templates = mined("disk full on node", "disk full", "probe full on node")
    assert len(set(templates.values())) == 3


def test_messages_sharing_less_than_the_similarity_stay_apart():
    pair = ("push denied token expired", "push timed out retry")
    assert len(set(mined(*pair).values())) == 2
    assert set(mined(*pair, similarity=0.25, max_constant_values=0).values()) == {"push <*> <*> <*>"}


def test_similarity_one_merges_nothing():
    names = ("flask", "uvicorn", "dotenv", "redis")
    templates = mined(*(f"no module named {name}" for name in names), similarity=1.0)
    assert len(set(templates.values())) == 4


def test_the_same_messages_in_any_order_give_the_same_templates():
    messages = [f"worker {w} lost {thing}" for w in "abcdef" for thing in ("lease", "lock")]
    assert mined(*messages) == mined(*reversed(messages))


@pytest.mark.parametrize("settings", [{"similarity": 0}, {"similarity": 1.5}, {"max_constant_values": -1}])
def test_out_of_range_settings_are_refused(settings):
    with pytest.raises(ValueError):
        mined("a b", **settings)


# The definition, as one regex over the whole text: a part (between whitespace and `= : , ; ( ) [ ]
# { } " '`) holding a digit, a slash or a placeholder, unless it is letters and a short number that
# name a kind (`socks5`), or that is all a dotted host name, is `<*>`; then values and their units,
# and runs of values, are folded into one (`fold_variable_runs`, tested on its own below).
_PART = r"[^\s=:,;()\[\]{}\"']"
_VARIABLE_PART = re.compile(
    rf"(?<!{_PART})(?![a-z]{{2,}}\d{{1,3}}(?!{_PART})){_PART}*?(?:\d|<[a-z_*]+>|/){_PART}*"
    rf"|(?<!{_PART})(?:[a-z0-9_-]+\.)+[a-z]{{2,}}(?!{_PART})"
)
_PIECES = ["rhost=", "10.0.0.1", "mail.example.org", "a.b", "/var/lib", "<email>", "<*>", "(uid=0)", "user",
           "Mon Jun 20 03:40:59 2005", "Mon Jun 20\n03:40:59", "12:30:45", " ", "\t", "\n", "\u3000", "\x1c",
           "٣", "é", "İ", "\u2028", "-", "_", ".", "socks5", "eth0", "sha256", " bytes", " (2.86 KB)", " sec",
           "<1", ":", "'", '"', "[", "}", ",", ";", "<", ">", "x", "Z"]  # fmt: skip


@given(st.lists(st.sampled_from(_PIECES) | st.text(max_size=3), max_size=14).map("".join))
@settings(max_examples=3000, derandomize=True, database=None, deadline=None)
def test_tokens_are_what_the_whole_text_regex_makes_of_the_text(text):
    def folded(part: str) -> tuple[str, ...]:
        return fold_variable_runs(_VARIABLE_PART.sub(WILDCARD, part).split())

    lowered = text.lower()
    if _CLOCK.search(lowered):  # done whole: a date may run over a line break
        expected = folded(_ASCTIME.sub(WILDCARD, lowered))
    else:  # folded line by line
        expected = tuple(token for line in lowered.split("\n") for token in folded(line))
    assert template_tokens(text) == expected


@pytest.mark.parametrize(
    ("tokens", "folded"),
    [
        # Proxifier: sizes with and without a second unit in brackets, a lifetime as a clock or `<1 sec`
        ("<*> close, <*> bytes (<*> kb) sent, <*> bytes received, lifetime <*>:<*>",
         "<*> close, <*> sent, <*> received, lifetime <*>"),
        ("<*> close, <*> bytes sent, <*> bytes (<*> mb) received, lifetime <*> sec",
         "<*> close, <*> sent, <*> received, lifetime <*>"),
        ("took <*> ms, retrying", "took <*>, retrying"),
        ("estimated size <*> kb, free <*> kb)", "estimated size <*>, free <*>)"),
        ("nodes <*> <*> <*> <*> down", "nodes <*> down"),  # a list of any length is one variable
        ("ports <*>, <*>, <*> open", "ports <*>, <*>, <*> open"),  # a comma keeps values apart
        ("<*> bytes", "<*>"),
        ("bytes <*> sec", "bytes <*>"),  # a unit only after a value
        ("size (<*>) of <*>:<*>:<*>", "size <*> of <*>"),
        ("(<*> failed)", "(<*> failed)"),  # a bracket that holds words stays
        ("user=<*> <*>", "user=<*> <*>"),  # a name's value is not a bare value
    ],
)  # fmt: skip
def test_a_value_with_its_units_and_a_run_of_values_are_one_variable(tokens, folded):
    assert fold_variable_runs(tokens.split()) == tuple(folded.split())


def test_words_with_a_short_number_name_a_kind_and_stay_words():
    assert template_tokens("a:80 open through proxy b:5070 SOCKS5") == (
        "a:<*>",
        "open",
        "through",
        "proxy",
        "b:<*>",
        "socks5",
    )
    assert template_tokens("link up on interface eth0") == ("link", "up", "on", "interface", "eth0")
    # Ids hold longer numbers, or start with one
    assert template_tokens("host c9063558 job 4abc") == ("host", "<*>", "job", "<*>")


def test_words_built_alike_keep_what_they_share_in_a_template():
    templates = mined(
        *(f"authentication failure user={name}" for name in ("guest", "test", "root", "admin", "bin"))
    )
    assert set(templates.values()) == {"authentication failure user=<*>"}


# Mining as it was, comparing each list with every template of its shape and splitting by recursion:
# the indexed mining must choose the same templates.
def drain_comparing_every_template(token_counts, similarity):
    by_shape = {}
    for tokens, _ in sorted(token_counts.items(), key=lambda item: (-item[1], item[0])):
        candidates = by_shape.setdefault((len(tokens), tokens[0] if tokens else ""), [])
        best, best_share = None, -1.0
        for candidate in candidates:
            same = sum(
                1 for known, token in zip(candidate[0], tokens, strict=True) if known == token != WILDCARD
            )
            share = same / len(tokens) if tokens else 1.0
            if share > best_share:
                best, best_share = candidate, share
        if best is not None and best_share >= similarity:
            best[0][:] = [
                known if known == token else WILDCARD for known, token in zip(best[0], tokens, strict=True)
            ]
            best[1].append(tokens)
        else:
            candidates.append((list(tokens), [tokens]))
    return [members for candidates in by_shape.values() for _, members in candidates]


def split_by_recursion(members, max_constant_values):
    best_position, best_values = None, max_constant_values + 1
    for position in range(len(members[0])):
        values = {tokens[position] for tokens in members}
        if 1 < len(values) < best_values and not any(WILDCARD in value for value in values):
            best_position, best_values = position, len(values)
    if best_position is None:
        return [members]
    by_value = defaultdict(list)
    for tokens in members:
        by_value[tokens[best_position]].append(tokens)
    return [
        part
        for _, group in sorted(by_value.items())
        for part in split_by_recursion(group, max_constant_values)
    ]


def mined_as_before(token_counts, similarity, max_constant_values):
    template_of = {}
    for members in drain_comparing_every_template(token_counts, similarity):
        for part in split_by_recursion(members, max_constant_values):
            text = templates_module._template_text(part)
            template_of.update(dict.fromkeys(part, text))
    return template_of


_WORDS = st.sampled_from(["a", "b", "c", "d", "e", WILDCARD, "x=<*>"])
_TOKEN_COUNTS = st.dictionaries(
    st.lists(_WORDS, max_size=7).map(tuple), st.integers(min_value=1, max_value=4), max_size=40
)


@given(_TOKEN_COUNTS, st.sampled_from([0.2, 0.4, 0.5, 0.6, 0.75, 1.0]), st.integers(min_value=0, max_value=4))
@settings(max_examples=1500, derandomize=True, database=None, deadline=None)
def test_indexed_mining_chooses_the_templates_comparing_every_template_chose(counts, similarity, max_values):
    assert mine_templates(counts, similarity, max_values) == mined_as_before(counts, similarity, max_values)


def test_past_the_index_bound_a_message_is_compared_with_the_latest_templates(monkeypatch):
    # The message shares `s` (position 1) and `t` (position 2) with the oldest template only, and each
    # with four later ones, which share no third position with it: 3 of 5 positions joins (0.6).
    counts = {("go", "s", "t", "m", "n"): 10, ("go", "s", "t", "new", "newer"): 1}
    counts |= {("go", "s", f"a{i}", f"b{i}", f"c{i}"): 5 for i in range(4)}
    counts |= {("go", f"d{i}", "t", f"e{i}", f"f{i}"): 5 for i in range(4)}
    message = ("go", "s", "t", "new", "newer")
    assert mine_templates(counts, similarity=0.6, max_constant_values=0)[message] == "go s t <*> <*>"
    # Past 3 templates under one token, the message is compared with the latest 3 only: not the oldest.
    monkeypatch.setattr(templates_module, "_MAX_TEMPLATES_PER_TOKEN", 3)
    assert mine_templates(counts, similarity=0.6, max_constant_values=0)[message] == "go s t new newer"
