"""Hostile text (issue 12): every rule applied to user text runs in time linear in its length, and
template mining in time near-linear in the number of distinct messages of one shape.

Each function is timed on a text of n characters and on the same shape at 2n: a linear one takes
about twice as long, a quadratic one four times. The bound, t(2n) <= 3 t(n) + 100 ms, leaves room
for a noisy machine: each time is CPU time, which other processes do not inflate as they do wall
time, the best of five taken in turns, with the caches emptied and the garbage collector paused; the
code this replaced took minutes on the longer texts (`a.a.a...` at 20,000 characters: 72 s).
"""

import gc
import random
import time
from collections.abc import Callable

import pandas as pd
import pytest

from faultline.caching import clear_all
from faultline.cleaning import clean_messages, extract_hint, mask_variable_parts, strip_framing
from faultline.report import _cell, message_template
from faultline.templates import mine_templates, template_tokens

N = 50_000  # characters; every shape is also timed at 2n, so the longest field is 100,000 (200,000 below)
SLACK_S = 0.1
ROUNDS = 5


def _random_text(alphabet: str, seed: int) -> Callable[[int], str]:
    def text(n: int) -> str:
        return "".join(random.Random(seed).choices(alphabet, k=n))

    return text


def _repeated(piece: str) -> Callable[[int], str]:
    return lambda n: (piece * (n // len(piece) + 1))[:n]


BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
SHAPES: dict[str, Callable[[int], str]] = {
    "nested dots": _repeated("a."),
    "dotted digits": _repeated("1."),
    "dashed words": _repeated("a-"),
    "at signs": _repeated("@"),
    "equals signs": _repeated("="),
    "base64": _random_text(BASE64, seed=1),
    "single quotes": _repeated("'"),
    "double quotes": _repeated('"'),
    "slashes": _repeated("/"),
    "colons": _repeated(":"),
    "digits": _repeated("7"),
    "letters": _repeated("a"),
    "backslashes": _repeated("\\"),
    "dashes": _repeated("-"),
    "scope labels": _repeated("scope:"),
    "scheme-like": _repeated("a:/"),
    "mixed": _random_text("a.-/@=:'\"1 _<>x\\|(Z", seed=2),
    "a field of base64": lambda n: "token=" + _random_text(BASE64, seed=3)(n - 6),
}


def framed(text: str) -> str:
    """`text` in every place of Qovery's framing: the scope line, the error message and the hint."""
    return (
        " MESSAGE FOR QOVERY TEAM:\n * Scope: Build platform " + text + " 'beta-build' with id 'ze9e'\n"
        "-----\n MESSAGE FOR THE USER\n Error message: beta-build " + text + "\n Hint: " + text + "\n"
    )


FUNCTIONS: dict[str, Callable[[str], object]] = {
    "strip_framing": lambda text: strip_framing(framed(text)),
    # Bare, so that no scope line before it names an application: `scope:` after `scope:` with no
    # quote after them was rescanned to the end of its line from each one.
    "strip_framing of bare text": strip_framing,
    "extract_hint": lambda text: extract_hint(framed(text)),
    "mask_variable_parts": mask_variable_parts,
    "mask_variable_parts for a label": lambda text: mask_variable_parts(text, placeholder="<*>"),
    "clean_messages": lambda text: clean_messages(pd.Series([framed(text)])),
    "template_tokens": template_tokens,
    "message_template": lambda text: message_template(pd.Series([text, text[::-1]])),
    "table cell": _cell,
}


def cpu_seconds(function: Callable[[], object]) -> float:
    clear_all()
    gc.disable()
    try:
        start = time.process_time()
        function()
        return time.process_time() - start
    finally:
        gc.enable()


def assert_at_most_linear(function: Callable[[int], object], n: int, label: str) -> None:
    short = long = float("inf")
    for _ in range(ROUNDS):  # in turns, so that a busy spell of the machine falls on both
        short = min(short, cpu_seconds(lambda: function(n)))
        long = min(long, cpu_seconds(lambda: function(2 * n)))
    assert long <= 3 * short + SLACK_S, f"{label}: {short:.3f} s at n={n:,}, {long:.3f} s at 2n"


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("function", FUNCTIONS)
def test_each_rule_runs_in_time_linear_in_its_text(function, shape):
    texts = {n: SHAPES[shape](n) for n in (N, 2 * N)}
    assert_at_most_linear(lambda n: FUNCTIONS[function](texts[n]), N, f"{function} on {shape}")


@pytest.mark.parametrize("function", FUNCTIONS)
def test_a_field_of_200_000_characters_costs_twice_one_of_100_000(function):
    texts = {n: "key=" + SHAPES["mixed"](n) for n in (100_000, 200_000)}
    assert_at_most_linear(lambda n: FUNCTIONS[function](texts[n]), 100_000, function)


def distinct_messages_of_one_shape(n: int) -> dict[tuple[str, ...], int]:
    """`n` distinct messages of 9 tokens and one first token, no two sharing half their positions,
    so each stays a template of its own: what made mining compare every message with every one."""
    draw = random.Random(5)
    words = ["".join(draw.choices("abcdefghijklmnopqrstuvwxyz", k=7)) for _ in range(2_000)]
    messages: set[str] = set()
    while len(messages) < n:
        messages.add(" ".join(["task", *draw.choices(words, k=7), "failed"]))
    return {template_tokens(message): 1 for message in sorted(messages)}


def test_mining_distinct_messages_of_one_shape_is_near_linear():
    counts = {n: distinct_messages_of_one_shape(n) for n in (2_000, 4_000, 8_000)}
    times = dict.fromkeys(counts, float("inf"))
    for _ in range(ROUNDS):  # in turns
        for n in counts:
            times[n] = min(times[n], cpu_seconds(lambda n=n: mine_templates(counts[n])))
    assert times[4_000] <= 3 * times[2_000] + SLACK_S, times
    assert times[8_000] <= 3 * times[4_000] + SLACK_S, times
