"""Secret redaction: credentials and personal data never travel past the flattening step.

Every message is redacted once, when it leaves its batch, so the corpus, the report, the alerts
and the logs downstream only ever see the placeholders.
"""

import re

from faultline.caching import BoundedCache

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

# What a text must hold for a rule to match at all, so that a text is scanned only by the rules it
# could trigger: the alternation of all fifteen rules runs at about 1 MB/s, as each position tries
# every rule, while these are substring checks at C speed. Written out one by one rather than as a
# table of predicates: a call per rule cost more than the checks themselves.
#
# Four dotted numbers, eight colon-separated hex groups: versions (`1.2.3`) and times (`12:30:45`)
# do not trigger the costly IP rules. No re.I, which would cost these patterns their fast scan. Each
# is looked for only where a shorter pattern starting with its punctuation is found first: a pattern
# that starts with a literal character is searched at C speed, one starting with a class is not.
_DOTTED_QUAD = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d")
_DOT_NUMBER_DOT = re.compile(r"\.\d{1,3}\.\d")  # inside every dotted quad
_EIGHT_HEX_GROUPS = re.compile(r"(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]")
_COLON_HEX_COLON = re.compile(r":[0-9a-fA-F]{1,4}:[0-9a-fA-F]")  # inside every eight hex groups
_GITHUB_PREFIX = re.compile(rb"gh[pousr]_")
# Whether any of the substring triggers below occurs at all: in a short line (most lines) one scan
# is faster than a dozen substring checks, each of which costs a fixed setup.
_ANY_RAW_TRIGGER = re.compile(rb"-----BEGIN |@|github_pat_|gh[pousr]_|glpat-|xox|AKIA|ASIA|eyJ|::")
_ANY_FOLDED_TRIGGER = re.compile(rb"bearer|basic|pass|pwd|secret|token|key")
_SHORT_LINE_BYTES = 256
_RULE = {kind: [i for i, (k, _, _) in enumerate(_SECRET_RULES) if k == kind] for kind in SECRET_KINDS}
_IPV4, _IPV6_FULL, _IPV6_SHORT = _RULE["ip_address"]


def _rules_triggered(text: str, raw: bytes, folded: bytes) -> tuple[int, ...]:
    """The rules whose trigger `text` holds. `raw` is its UTF-8, `folded` that case-folded (for the
    rules that ignore case): substrings are looked for in bytes, which is several times faster than in
    text holding an emoji (four bytes a character), and the same for the ASCII triggers."""
    rules: list[int] = []
    if (
        len(raw) > _SHORT_LINE_BYTES
        or _ANY_RAW_TRIGGER.search(raw) is not None
        or _ANY_FOLDED_TRIGGER.search(folded) is not None
    ):
        rules += _substring_rules(raw, folded)
    # On the text, not its bytes: \d matches every script's digits, as in the IP rule.
    if _DOT_NUMBER_DOT.search(text) and _DOTTED_QUAD.search(text):
        rules.append(_IPV4)
    if _COLON_HEX_COLON.search(text) and _EIGHT_HEX_GROUPS.search(text):
        rules.append(_IPV6_FULL)
    return tuple(sorted(rules))


def _substring_rules(raw: bytes, folded: bytes) -> list[int]:
    rules: list[int] = []
    if b"-----BEGIN " in raw:
        rules += _RULE["private_key"]
    if b"://" in raw and b"@" in raw:
        rules += _RULE["url_credentials"]
    if b"bearer" in folded:
        rules += _RULE["bearer_token"]
    if b"basic" in folded:
        rules += _RULE["basic_auth"]
    if b"github_pat_" in raw or (b"gh" in raw and _GITHUB_PREFIX.search(raw)):
        rules += _RULE["github_token"]
    if b"glpat-" in raw:
        rules += _RULE["gitlab_token"]
    if b"xox" in raw:
        rules += _RULE["slack_token"]
    if b"AKIA" in raw or b"ASIA" in raw:
        rules += _RULE["aws_access_key"]
    if b"eyJ" in raw:
        rules += _RULE["jwt"]
    # Every name in _SECRET_NAMES holds one of these.
    if b"pass" in folded or b"pwd" in folded or b"secret" in folded or b"token" in folded or b"key" in folded:
        rules += _RULE["assigned_secret"]
    if b"@" in raw:
        rules += _RULE["email"]
    if b"::" in raw:
        rules.append(_IPV6_SHORT)
    return rules


# Under re.IGNORECASE these four match an ASCII letter, though str.lower() does not make them one
# (found by matching [a-z] against every code point): fold them first, so no trigger misses them.
_FOLD_TWINS = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"})


def _alternation(rules: tuple[int, ...]) -> re.Pattern[str]:
    """One pattern for these rules, in their order, so at one position the earlier rule still wins."""
    return re.compile(
        "|".join(f"(?P<p{i}>{_SECRET_RULES[i][1]})(?P<s{i}>{_SECRET_RULES[i][2]})" for i in rules), re.S
    )


# Few sets of rules occur (most lines trigger none, or one or two).
_alternations = BoundedCache(_alternation, max_entries=256, max_key_length=len(_SECRET_RULES))


_KIND_OF_GROUP = {f"s{i}": kind for i, (kind, _, _) in enumerate(_SECRET_RULES)}


def _placeholder(match: re.Match[str]) -> str:
    secret_group = match.lastgroup
    kept_prefix = match.group("p" + secret_group[1:])
    return f"{kept_prefix}<{_KIND_OF_GROUP[secret_group]}>"


_ALL_RULES = tuple(range(len(_SECRET_RULES)))
# Only these rules can match across a line break: a private key's body, and the whitespace after
# `Bearer`, `Basic` or a secret's name (`password:` then the value on the next line).
_SPANS_LINES = "-----BEGIN "
_OPENING_KINDS = ("bearer_token", "basic_auth", "assigned_secret")
_OPEN_LINE_END = re.compile(rf"(?i:(?:bearer|basic|{_SECRET_NAMES})\\?[\"']?\s*(?:[:=]\s*)?)\Z")


def _redact_scan(text: str, rules: tuple[int, ...]) -> str:
    return _alternations[rules].sub(_placeholder, text) if rules else text


def _triggered_rules(text: str) -> tuple[int, ...]:
    """The rules that could match in `text` (a rule whose trigger is absent matches nowhere)."""
    raw = text.encode("utf-8", "surrogatepass")
    # The twins' UTF-8 begins C4 (İ, ı), C5 BF (ſ) or E2 84 AA (K); C4 also begins other letters,
    # which the slower path folds just as well.
    if b"\xc4" in raw or b"\xc5\xbf" in raw or b"\xe2\x84\xaa" in raw:
        folded = text.translate(_FOLD_TWINS).lower().encode("utf-8", "surrogatepass")
    else:
        # Outside the twins, no character's lower case holds an ASCII letter (checked over every
        # code point), so lowering the ASCII bytes finds the same triggers as str.lower().
        folded = raw.lower()
    return _rules_triggered(text, raw, folded)


def _redact_any_line(line: str) -> tuple[str, bool]:
    """The line redacted, and whether a secret could start at its end and go on in the next line."""
    rules = _triggered_rules(line)
    if not rules:
        return line, False
    opens = any(_SECRET_RULES[i][0] in _OPENING_KINDS for i in rules)
    return _redact_scan(line, rules), opens and _OPEN_LINE_END.search(line) is not None


# Lines that recur (the framing, the hints) are short; a long line is most likely unique, and
# caching lines of any length could hold gigabytes (a message may have 100,000 characters).
_redacted_lines = BoundedCache(_redact_any_line, max_entries=16_384, max_key_length=500)


def redact_secrets(text: str) -> str:
    """Replace every credential, e-mail address and IP address in `text` with `<kind>`.

    The result is that of one scan with every rule at every position (at one position the earlier
    rule wins), computed faster: line by line, since no match crosses a line break unless a line
    ends open or holds a private key; each distinct line once, since messages share most of their
    lines (the framing, the hint); and each line only by the rules it could trigger.
    """
    if _SPANS_LINES in text:
        return _redact_scan(text, _triggered_rules(text))
    redacted, opens = zip(*[_redacted_lines[line] for line in text.split("\n")], strict=True)
    if True in opens[:-1]:
        return _redact_scan(text, _triggered_rules(text))
    return "\n".join(redacted)


def redact_secrets_in_one_scan(text: str) -> str:
    """`redact_secrets` the slow way, every rule tried at every position: the reference it must equal."""
    return _redact_scan(text, _ALL_RULES)


_NAMES_A_SECRET = re.compile(_SECRET_NAMES, re.I)


def names_a_secret(name: str) -> bool:
    """Whether a field called `name` holds a secret by its name alone, whatever its value looks like."""
    return _NAMES_A_SECRET.search(name) is not None
