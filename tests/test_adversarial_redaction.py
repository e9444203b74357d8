"""No text stalls the day: redaction and flattening take time linear in what they read.

Each adversarial shape below made a regex of the old redaction backtrack (nested dots and runs of
`@` for the e-mail rule, `password="` and quotes for the assigned-secret rule, colons for IPv6,
`://` for URL credentials), or makes the new one's code do more per match. For each, redacting a
text of n characters and of 2n is timed, and a flattened event holding it: doubling the length may
at most double the time, with room for a noisy machine (3x and a small constant). The old code
took 3.1 to 6.7 times as long per doubling on the e-mail rule's shapes (14 to 29 s at 50,000
characters, 47 to 107 s at 100,000).

Fields past their bound are quarantined without being read whole, and the quarantine of a payload
of ten million bad elements is a sample and an exact count.
"""

import json
import random
import string
import time
from collections.abc import Callable

import pandas as pd
import pytest

from faultline.flatten import (
    MAX_EXTRA_CHARS,
    MAX_SCOPE_CHARS,
    MAX_STATE_CHARS,
    QUARANTINE_SAMPLE_PER_REASON,
    add_flattened_parts,
    flatten_batches,
)
from faultline.redaction import redact_secrets

_BASE64 = string.ascii_letters + string.digits + "+/"


def _random(alphabet: str, n: int, seed: int = 5) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(alphabet) for _ in range(n))


def _repeat(unit: str) -> Callable[[int], str]:
    return lambda n: (unit * (n // len(unit) + 1))[:n]


# Each shape makes a text of about n characters.
SHAPES: dict[str, Callable[[int], str]] = {
    "nested dots": _repeat("a."),
    "dotted words then @": lambda n: _repeat("ab.")(n - 1) + "@",
    "@ then dotted words": lambda n: "@" + _repeat("a.")(n - 1),
    "x@ then dashes": lambda n: "x@" + _repeat("a-")(n - 2),
    "dotted digits then @": lambda n: _repeat("1.")(n - 1) + "@",
    "run of @": _repeat("@"),
    "a@ repeated": _repeat("a@"),
    "a@b. repeated": _repeat("a@b."),
    "run of =": _repeat("="),
    "password= repeated": _repeat("password="),
    'password=" repeated': _repeat('password="'),
    "password: then spaces": lambda n: "password:" + " " * (n - 10) + "x",
    "password=a then words": lambda n: "password=a" + _repeat(" word")(n - 10),
    "password=a then &a": lambda n: "password=a" + _repeat("&a")(n - 10),
    "password=a then &&": lambda n: "password=a" + _repeat("&")(n - 10),
    "mysql then -p -p": lambda n: "mysql" + _repeat(" -p")(n - 5),
    "docker login then -p": lambda n: "docker login" + _repeat(" -p")(n - 12),
    "curl then -u a:": lambda n: "curl" + _repeat(" -u a:")(n - 4),
    "run of quotes": _repeat('"'),
    "escaped quotes": _repeat('\\"'),
    "base64": lambda n: _random(_BASE64, n),
    "base64 lines": lambda n: "\n".join(_random(_BASE64, 64, seed) for seed in range(n // 65 + 1))[:n],
    "ghp_ then base64": lambda n: "ghp_" + _random(_BASE64, n - 4),
    "colons": _repeat(":"),
    "hex and colons": _repeat("a1:"),
    "digits and dots": _repeat("1."),
    "url without @": lambda n: "https://" + _repeat("a:")(n - 8),
    "schemes": _repeat("a://b:"),
    "private key headers": _repeat("-----BEGIN RSA PRIVATE KEY-----"),
    "authorization headers": _repeat("Authorization: "),
    "bearer words": _repeat("Bearer "),
    "lines of one letter": _repeat("a\n"),
    "wrapped words": _repeat("word\nword "),
    "dsn shapes": _repeat("u:p@"),
    # The second review's rules: a value after a space, a name given as `name`, a quoted name and a
    # comma, an XML element, MongoDB's and redis-cli's flags, Oracle's user/password, options, URLs
    # percent-encoded, `?key=`, JSON escapes of plain characters.
    "password then a1 words": lambda n: "password" + _repeat(" a1")(n - 8),
    "password a1 repeated": _repeat("password a1b2c3d4 "),
    "name: password then value": _repeat("name: password\n value: "),
    "quoted names and commas": _repeat("'password', "),
    "xml names": _repeat("<password>"),
    "mongo then -p -p": lambda n: "mongo" + _repeat(" -p")(n - 5),
    "sqlplus then a/": lambda n: "sqlplus" + _repeat(" a/")(n - 7),
    "option of many parts": lambda n: "--" + _repeat("a-")(n - 2),
    "encoded schemes": _repeat("a%3A%2F%2F"),
    "encoded userinfo without @": lambda n: "a%3A%2F%2Fu%3A" + _repeat("p%3A")(n - 14),
    "encoded assignments": _repeat("password%3D"),
    "key parameters": _repeat("?key="),
    "escaped names": _repeat("\\u0070assword="),
    "echo then pipes": _repeat("echo a | docker "),
    "ssh-keygen then -N -P": lambda n: "ssh-keygen" + _repeat(" -N a -P")(n - 10),
    # The rules are searched in parts (names, e-mail and IP addresses, the others): a part's match
    # that another part's secret covers the start of, again and again. The first took 39 s at
    # 100,000 characters when each such match was searched for again.
    "e-mail over a name's value": _repeat("a@x.token.com:v"),
    "e-mail over a name's spaced value": _repeat("a@x.token.com: v "),
    "IP address in a name's value": _repeat("password=1.1.1.1 "),
    "IPv6 then a name": _repeat("::a password="),
    "name then IP address": _repeat("password: 1.1.1.1 "),
    "XML element around an e-mail": _repeat("<password>a@b.co</"),
    "token run then e-mail": _repeat("aB3dE5gH7jK9mN1pQ@x.io "),
    # A command's rule reads to the line's end from the command's name; a nearer match after that
    # name made each search read the line again (the second review's shapes; the last two took 4x
    # per doubling in the one regex too).
    "name, sqlplus, then ?key=": _repeat("pw=,sqlplus;?key=a "),
    "sqlplus then ?key=": _repeat(",sqlplus;?key=a "),
    "sqlplus then mysql -p": _repeat(",sqlplus;,mysql -pX "),
    "curl then ssh-keygen": _repeat(" curl x; ssh-keygen -N a "),
}
N = 50_000
N_MESSAGE = 40_000  # twice this is under the message's bound


def best_time(run: Callable[[], object], repeats: int = 2) -> float:
    """The least CPU time of `repeats` runs: this process's own, which the rest of a shared machine
    disturbs far less than the time on the clock."""
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return best


def assert_linear(run_on: Callable[[str], object], make: Callable[[int], str], n: int) -> None:
    """`run_on` a text of 2n characters takes at most 3 times as long as on one of n, and 50 ms."""
    small, large = make(n), make(2 * n)
    run_on(small), run_on(large)  # warm: regexes compiled, caches filled
    t_small, t_large = best_time(lambda: run_on(small)), best_time(lambda: run_on(large))
    assert t_large <= 3 * t_small + 0.05, f"{t_small:.3f} s at {n} characters, {t_large:.3f} s at {2 * n}"


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_redacting_twice_the_text_takes_at_most_about_twice_the_time(shape):
    assert_linear(redact_secrets, SHAPES[shape], N)


def one_event(**fields) -> pd.DataFrame:
    event = {"scope": "APPLICATION", "state": "DEPLOYMENT_ERROR", "message": "m", **fields}
    day = pd.Timestamp("2026-11-20")
    return pd.DataFrame({"id": [1], "created_at": [day], "payload": [json.dumps([event])]})


@pytest.mark.parametrize("field", ["message", "note"])
@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_flattening_an_event_twice_as_long_takes_at_most_about_twice_the_time(shape, field):
    dumps = {}  # made once, by the warming run, not timed

    def flatten_one(text: str) -> object:
        if len(text) not in dumps:
            dumps[len(text)] = one_event(**{field: text})
        return flatten_batches(dumps[len(text)])

    assert_linear(flatten_one, SHAPES[shape], N_MESSAGE)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"scope": "s" * (MAX_SCOPE_CHARS + 1)}, "scope_too_long"),
        ({"state": "S" * (MAX_STATE_CHARS + 1)}, "state_too_long"),
        ({"message": "m" * 200_001}, "message_too_long"),
        ({"note": "n" * MAX_EXTRA_CHARS}, "extra_too_long"),
        ({"notes": ["n"] * (MAX_EXTRA_CHARS // 4)}, "extra_too_long"),
        ({"message": "m" * 99_000, "note": "n" * 99_000, "scope": "s" * 9_000}, "event_too_long"),
    ],
)
def test_every_field_past_its_bound_is_quarantined_with_its_reason(fields, reason):
    flattened = flatten_batches(one_event(**fields))
    assert flattened.events.empty
    assert flattened.quarantined == {reason: 1}
    row = flattened.quarantine.iloc[0]
    assert row["reason"] == reason and "the limit is" in row["detail"] and len(row["excerpt"]) <= 200


@pytest.mark.parametrize("shape", ["a@ repeated", 'password=" repeated', "base64", "colons"])
@pytest.mark.parametrize("field", ["scope", "message", "note", "state"])
def test_a_field_of_200000_characters_is_quarantined_at_once(shape, field):
    dump = one_event(**{field: SHAPES[shape](200_000)})
    started = time.perf_counter()
    flattened = flatten_batches(dump)
    assert time.perf_counter() - started < 1.0
    assert flattened.events.empty and flattened.n_quarantined == 1


def test_a_20_megabyte_payload_of_numbers_is_a_bounded_sample_and_an_exact_count():
    n = 10_000_000
    day = pd.Timestamp("2026-11-20")
    big = pd.DataFrame(
        {"id": [1], "created_at": [day], "payload": ["[" + ",".join(["1"] * n) + "]"]}
    )  # 20 MB
    small = pd.DataFrame(
        {"id": [2], "created_at": [day], "payload": [json.dumps(["x"] * 5 + [{"state": "X"}])]}
    )
    parts = [flatten_batches(big), flatten_batches(small)]
    assert parts[0].quarantined == {"event_not_an_object": n}
    assert len(parts[0].quarantine) == QUARANTINE_SAMPLE_PER_REASON
    day_total = add_flattened_parts(parts)
    assert day_total.quarantined == {"event_not_an_object": n + 5, "event_missing_field": 1}
    assert day_total.n_quarantined == n + 6 and day_total.n_events_read == n + 6
    quarantine = day_total.quarantine
    assert len(quarantine) == QUARANTINE_SAMPLE_PER_REASON + 1  # the first 100 numbers, the one object
    assert quarantine["event_index"].tolist()[:100] == list(range(100)) and quarantine["row_id"].iloc[-1] == 2
