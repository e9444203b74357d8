"""Secret redaction: credentials and personal data never travel past the flattening step.

Every message is redacted once, when it leaves its batch, so the corpus, the report, the alerts
and the logs downstream only ever see the placeholders.
"""

import re

# Names that say a field or an assignment holds a secret (`DB_PASSWORD`, `api_key`, `auth-token`).
_SECRET_NAMES = (
    r"password|passwd|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|client[_-]?secret|auth[_-]?token"
)
NAMED_SECRET = "<assigned_secret>"

# (kind, context kept before the secret, the secret). Order matters: at one position the earlier
# rule wins, so credentials inside URLs go before the e-mail rule would read `user:pw@host`.
_SECRET_RULES: tuple[tuple[str, str, str], ...] = (
    ("private_key", "", r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)"),
    ("url_credentials", "://", r"[^\s/@:]+:[^\s/@]+(?=@)"),
    ("url_credentials", "://", r"[A-Za-z0-9._~%-]{16,}(?=@)"),
    ("bearer_token", r"(?i:bearer\s+)", r"[A-Za-z0-9._~+/=-]{8,}"),
    ("basic_auth", r"(?i:basic\s+)", r"[A-Za-z0-9+/=]{8,}"),
    ("github_token", "", r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})\b"),
    ("gitlab_token", "", r"\bglpat-[A-Za-z0-9_-]{20,}\b"),
    ("slack_token", "", r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b"),
    ("aws_access_key", "", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    ("jwt", "", r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b"),
    (
        "assigned_secret",
        # No word boundary before the name: `DB_PASSWORD=`, `PGPASSWORD=` and `aws_secret_access_key=`
        # name secrets too. A quoted value is taken whole, spaces included, and so is one whose quotes
        # are escaped, as in JSON text that could not be parsed (`\"password\": \"...\"`).
        rf"(?i:(?:{_SECRET_NAMES})\\?[\"']?\s*[:=]\s*\\?[\"']?)",
        r"(?:(?<=\")[^\"\r\n]+?(?=\\?\")|(?<=')[^'\r\n]+?(?=\\?')|[^\s\"',;&}]+)",
    ),
    ("email", "", r"\b[\w.%+-]+@[\w.-]+\.[A-Za-z]{2,}\b"),
    ("ip_address", "", r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b"),
    ("ip_address", "", r"(?i:\b(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}\b)"),
    # IPv6 with `::` (2001:db8::1, ::1, ::ffff:192.0.2.1); not `std::string` nor `Foo::Bar`.
    (
        "ip_address",
        "",
        r"(?i:(?<![\w:.])(?=:*[0-9a-f])(?:[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,6})?::"
        r"(?:(?:[0-9a-f]{1,4}:){0,5}(?:\d{1,3}\.){3}\d{1,3}|[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,6})?"
        r"(?![\w]|:[0-9a-f]))",
    ),
)

SECRET_KINDS: frozenset[str] = frozenset(kind for kind, _, _ in _SECRET_RULES)

# One alternation scans each message once instead of once per rule.
_ANY_SECRET = re.compile(
    "|".join(f"(?P<p{i}>{prefix})(?P<s{i}>{secret})" for i, (_, prefix, secret) in enumerate(_SECRET_RULES)),
    re.S,
)
_KIND_OF_GROUP = {f"s{i}": kind for i, (kind, _, _) in enumerate(_SECRET_RULES)}


def _placeholder(match: re.Match[str]) -> str:
    secret_group = match.lastgroup
    kept_prefix = match.group("p" + secret_group[1:])
    return f"{kept_prefix}<{_KIND_OF_GROUP[secret_group]}>"


def redact_secrets(text: str) -> str:
    """Replace every credential, e-mail address and IP address in `text` with `<kind>`."""
    return _ANY_SECRET.sub(_placeholder, text)


_NAMES_A_SECRET = re.compile(_SECRET_NAMES, re.I)


def names_a_secret(name: str) -> bool:
    """Whether a field called `name` holds a secret by its name alone, whatever its value looks like."""
    return _NAMES_A_SECRET.search(name) is not None
