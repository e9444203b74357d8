"""Template mining: messages that differ only in their variable parts share a template."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faultline.templates import _ASCTIME, WILDCARD, mine_templates, template_tokens


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
# { } " '`) holding a digit, a slash or a placeholder, or that is all a dotted host name, is `<*>`.
_PART = r"[^\s=:,;()\[\]{}\"']"
_VARIABLE_PART = re.compile(
    rf"(?<!{_PART}){_PART}*?(?:\d|<[a-z_*]+>|/){_PART}*|(?<!{_PART})(?:[a-z0-9_-]+\.)+[a-z]{{2,}}(?!{_PART})"
)
_PIECES = ["rhost=", "10.0.0.1", "mail.example.org", "a.b", "/var/lib", "<email>", "<*>", "(uid=0)", "user",
           "Mon Jun 20 03:40:59 2005", "Mon Jun 20\n03:40:59", "12:30:45", " ", "\t", "\n", "\u3000", "\x1c",
           "٣", "é", "İ", "\u2028", "-", "_", ".",
           ":", "'", '"', "[", "}", ",", ";", "<", ">", "x", "Z"]  # fmt: skip


@given(st.lists(st.sampled_from(_PIECES) | st.text(max_size=3), max_size=14).map("".join))
@settings(max_examples=3000, derandomize=True, database=None, deadline=None)
def test_tokens_are_what_the_whole_text_regex_makes_of_the_text(text):
    lowered = _ASCTIME.sub(WILDCARD, text.lower())
    assert template_tokens(text) == tuple(_VARIABLE_PART.sub(WILDCARD, lowered).split())
