"""Secrets and personal data in error messages are replaced by the name of their kind."""

import re

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from faultline.redaction import (
    SECRET_RULES,
    SecretRule,
    _triggered_rules,
    redact_secrets,
    redact_secrets_in_one_scan,
)

GITHUB_TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"


@pytest.mark.parametrize(
    ("text", "secret", "placeholder"),
    [
        (f"clone https://oauth2:{GITHUB_TOKEN}@github.com/acme/shop.git", GITHUB_TOKEN, "<url_credentials>"),
        ("postgresql://admin:S3cr3t!x@db.internal:5432/app", "S3cr3t!x", "<url_credentials>"),
        ("Authorization: Bearer abc.def-ghi_123456", "abc.def-ghi_123456", "<bearer_token>"),
        ("Authorization: Basic YWRtaW46aHVudGVyMg==", "YWRtaW46aHVudGVyMg==", "<basic_auth>"),
        (f"token {GITHUB_TOKEN} rejected", GITHUB_TOKEN, "<github_token>"),
        ("key glpat-abcdefghij1234567890 expired", "glpat-abcdefghij1234567890", "<gitlab_token>"),
        ("slack xoxb-123456789012-abcdefABCDEF failed", "xoxb-123456789012-abcdefABCDEF", "<slack_token>"),
        ("aws AKIAIOSFODNN7EXAMPLE denied", "AKIAIOSFODNN7EXAMPLE", "<aws_access_key>"),
        ("jwt eyJhbGciOiJIUzI1.eyJzdWIiOiIxMjM0.SflKxwRJSMeKKF2QT4", "eyJhbGciOiJIUzI1", "<jwt>"),
        ('password="hunter2" rejected', "hunter2", "<assigned_secret>"),
        ("API_KEY: sk_live_51Habc", "sk_live_51Habc", "<assigned_secret>"),
        ("mail ops@acme.io now", "ops@acme.io", "<email>"),
        ("connect 10.12.0.7:5432 refused", "10.12.0.7", "<ip_address>"),
        ("connect 2001:0db8:85a3:0000:0000:8a2e:0370:7334 refused", "2001:0db8", "<ip_address>"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----", "MIIEow", "<private_key>"),
    ],
)
def test_each_kind_of_secret_is_replaced_by_its_placeholder(text, secret, placeholder):
    redacted = redact_secrets(text)
    assert secret not in redacted
    assert placeholder in redacted


def test_ordinary_error_text_is_left_alone():
    text = "error while building container image beta-build (ze9e19029): exit code 137, version 1.2.3"
    assert redact_secrets(text) == text


def test_the_context_around_a_secret_is_kept():
    assert redact_secrets("clone https://u:p4ss@github.com/a/b.git failed") == (
        "clone https://<url_credentials>@github.com/a/b.git failed"
    )


# Pieces that start, end or almost make a secret, and the characters that separate them: a fast path
# that skipped a rule, or cut a secret at a line break, would show against the one full scan.
_PIECES = [
    "-----BEGIN RSA PRIVATE KEY-----", "-----END RSA PRIVATE KEY-----", "MIIEow", "https://", "u:p4ss@",
    "oauth2:" + GITHUB_TOKEN + "@", "github.com", "Bearer ", "BEARER\n", "basic", "Basic\t",
    "YWRtaW46aHVudGVy", GITHUB_TOKEN, "github_pat_" + "A" * 22, "glpat-" + "x" * 20, "xoxb-1234567890ab",
    "AKIAIOSFODNN7EXAMPLE",
    "eyJhbGciOiJI.eyJzdWIiOiIx.SflKxwRJSM", "password", "DB_PASSWORD", "api-key", "ſecret", "toKen", "\u0130",
    "basıc ", "basİc\t", "\u212aey",
    "=", ":", '"', "'", '\\"', " ", "\n", "\r\n", "\n\n", "ops@acme.io", "@", "10.12.0.7", "1.2.3", "٣.٤",
    "2001:0db8:85a3:0000:0000:8a2e:0370:7334", "2001:db8::1", "::1", "std::string", "a", "Z9", "é", "❌",
    "١٠.٢.٣.٤", "0:a:b:c:d:e:f:1", "a:1", "GH", "gh", "p_", "ghp_", "\ud800",
]  # fmt: skip


@given(st.lists(st.sampled_from(_PIECES) | st.text(max_size=4), max_size=12).map("".join))
@settings(max_examples=3000, derandomize=True, database=None, deadline=None)
def test_redaction_line_by_line_equals_one_scan_with_every_rule(text):
    assert redact_secrets(text) == redact_secrets_in_one_scan(text)


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer\n  abcdefgh12345678",
        "password:\nhunter2hunter2",
        'api_key =\n"abc123"',
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nMIIEow\n-----END RSA PRIVATE KEY-----",
        "line one 10.0.0.1\nline two ops@acme.io\n\u212aey=abc",
    ],
)
def test_secrets_that_cross_a_line_break_are_redacted_as_in_one_scan(text):
    assert redact_secrets(text) == redact_secrets_in_one_scan(text)
    assert redact_secrets(text) != text


# Letters that re.IGNORECASE also matches as these (`ſecret` is a `secret`).
_TWIN_OF = {"i": "\u0131", "I": "\u0130", "s": "\u017f", "S": "\u017f", "k": "\u212a", "K": "\u212a"}


@st.composite
def texts_with_a_match(draw, pattern: re.Pattern[str]) -> str:
    """Texts holding a match of `pattern` amid other text, half of them with some letters twinned."""
    text = draw(st.from_regex(pattern))
    if draw(st.booleans()):
        twinned = draw(st.integers(min_value=0, max_value=2 ** len(text) - 1))
        text = "".join(_TWIN_OF.get(char, char) if twinned >> i & 1 else char for i, char in enumerate(text))
    return text


# A rule skipped on a line it matches in would let the secret through: every text holding a match,
# generated from the rule's own regex, must be scanned by the rule, whatever its declared triggers.
@pytest.mark.parametrize("index", range(len(SECRET_RULES)), ids=lambda index: SECRET_RULES[index].kind)
def test_every_text_a_rule_matches_in_holds_its_triggers_so_the_rule_scans_it(index):
    rule = SECRET_RULES[index]
    pattern = re.compile(f"(?:{rule.context})(?:{rule.secret})", re.S)

    @given(texts_with_a_match(pattern))
    @settings(
        max_examples=200,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
    )
    def holds_a_trigger(text):
        assume(pattern.search(text) is not None)
        assert index in _triggered_rules(text)

    holds_a_trigger()


def test_a_rule_declared_without_triggers_is_an_error():
    with pytest.raises(ValueError, match="'api_key' has no triggers"):
        SecretRule("api_key", "", r"sk_live_[A-Za-z0-9]{8,}")


def test_a_rule_that_ignores_case_declares_its_triggers_in_lower_case():
    with pytest.raises(ValueError, match="lower case"):
        SecretRule("bearer_token", r"(?i:bearer\s+)", r"\S{8,}", triggers=("Bearer",), ignore_case=True)


@pytest.mark.parametrize(
    ("index", "trigger"),
    [
        (index, trigger)
        for index, rule in enumerate(SECRET_RULES)
        if not rule.shapes
        for trigger in rule.triggers
    ],
)
def test_a_line_holding_one_of_a_rules_triggers_is_scanned_by_it(index, trigger):
    assert index in _triggered_rules(f"x {trigger.upper() if SECRET_RULES[index].ignore_case else trigger} x")


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        ("a build that failed", []),
        ("version 1.2.3 at 12:30:45", []),
        ("mail ops@acme.io", ["email"]),
        ("clone https://u:p@host", ["url_credentials", "url_credentials", "email"]),
        ("connect 10.0.0.1 or 0:a:b:c:d:e:f:1 or ::1", ["ip_address", "ip_address", "ip_address"]),
        ("std::string", ["ip_address"]),  # the `::` rule, which finds no address in it
    ],
)
def test_a_line_is_scanned_only_by_the_rules_whose_triggers_and_shapes_it_holds(text, kinds):
    assert [SECRET_RULES[index].kind for index in _triggered_rules(text)] == kinds
