"""Secrets and personal data in error messages are replaced by the name of their kind."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faultline.redaction import redact_secrets, redact_secrets_in_one_scan

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
