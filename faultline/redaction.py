"""Secret redaction: credentials and personal data never travel past the flattening step.

Every message is redacted once, when it leaves its batch, so the corpus, the report, the alerts
and the logs downstream only ever see the placeholders.
"""

import re
from dataclasses import dataclass

from faultline.caching import BoundedCache

# Names that say a field or an assignment holds a secret (`DB_PASSWORD`, `api_key`, `auth-token`).
_SECRET_NAMES = (
    r"password|passwd|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|client[_-]?secret|auth[_-]?token"
)
NAMED_SECRET = "<assigned_secret>"


@dataclass(frozen=True)
class SecretRule:
    """A kind of secret, as the context kept before it and the secret (regexes), and what every text
    the rule matches in holds: the triggers that decide which lines the rule scans."""

    kind: str
    context: str
    secret: str
    # Literals of which every such text holds one; lower case where the rule ignores case, as they
    # are then looked for in the text lowered.
    triggers: tuple[str, ...] = ()
    ignore_case: bool = False
    # Regexes of which every such text holds a match of each, looked for in the text as it is, for
    # what no literal tells (four dotted numbers). One that starts with a literal character is found
    # at C speed: put it first.
    shapes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.triggers and not self.shapes:
            raise ValueError(
                f"secret rule {self.kind!r} has no triggers: declare the literals (triggers) or regexes "
                "(shapes) that every text it matches in holds, which decide the lines it scans"
            )
        if self.ignore_case and any(trigger != trigger.lower() for trigger in self.triggers):
            raise ValueError(f"secret rule {self.kind!r} ignores case: write its triggers in lower case")


# Order matters: at one position the earlier rule wins, so credentials inside URLs go before the
# e-mail rule would read `user:pw@host`.
SECRET_RULES: tuple[SecretRule, ...] = (
    SecretRule(
        "private_key",
        "",
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)",
        triggers=("-----BEGIN ",),
    ),
    SecretRule("url_credentials", "://", r"[^\s/@:]+:[^\s/@]+(?=@)", triggers=("@",), shapes=("://",)),
    SecretRule("url_credentials", "://", r"[A-Za-z0-9._~%-]{16,}(?=@)", triggers=("@",), shapes=("://",)),
    SecretRule(
        "bearer_token", r"(?i:bearer\s+)", r"[A-Za-z0-9._~+/=-]{8,}", triggers=("bearer",), ignore_case=True
    ),
    SecretRule("basic_auth", r"(?i:basic\s+)", r"[A-Za-z0-9+/=]{8,}", triggers=("basic",), ignore_case=True),
    SecretRule(
        "github_token",
        "",
        r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})\b",
        triggers=("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    ),
    SecretRule("gitlab_token", "", r"\bglpat-[A-Za-z0-9_-]{20,}\b", triggers=("glpat-",)),
    SecretRule("slack_token", "", r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b", triggers=("xox",)),
    SecretRule("aws_access_key", "", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", triggers=("AKIA", "ASIA")),
    SecretRule(
        "jwt", "", r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b", triggers=("eyJ",)
    ),
    SecretRule(
        "assigned_secret",
        # No word boundary before the name: `DB_PASSWORD=`, `PGPASSWORD=` and `aws_secret_access_key=`
        # name secrets too. A quoted value is taken whole, spaces included, and so is one whose quotes
        # are escaped, as in JSON text that could not be parsed (`\"password\": \"...\"`).
        rf"(?i:(?:{_SECRET_NAMES})\\?[\"']?\s*[:=]\s*\\?[\"']?)",
        r"(?:(?<=\")[^\"\r\n]+?(?=\\?\")|(?<=')[^'\r\n]+?(?=\\?')|[^\s\"',;&}]+)",
        triggers=("pass", "pwd", "secret", "token", "key"),  # one is in every name above
        ignore_case=True,
    ),
    SecretRule("email", "", r"\b[\w.%+-]+@[\w.-]+\.[A-Za-z]{2,}\b", triggers=("@",)),
    # Four dotted numbers, eight colon-separated hex groups: versions (`1.2.3`) and times (`12:30:45`)
    # do not trigger the costly IP rules; a shorter pattern starting with the punctuation goes first.
    # On the text, where \d matches every script's digits as in the rule; no re.I, which would cost
    # these patterns their fast scan.
    SecretRule(
        "ip_address",
        "",
        r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b",
        shapes=(r"\.\d{1,3}\.\d", r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d"),
    ),
    SecretRule(
        "ip_address",
        "",
        r"(?i:\b(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}\b)",
        shapes=(r":[0-9a-fA-F]{1,4}:[0-9a-fA-F]", r"(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]"),
    ),
    # IPv6 with `::` (2001:db8::1, ::1, ::ffff:192.0.2.1); not `std::string` nor `Foo::Bar`.
    SecretRule(
        "ip_address",
        "",
        r"(?i:(?<![\w:.])(?=:*[0-9a-f])(?:[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,6})?::"
        r"(?:(?:[0-9a-f]{1,4}:){0,5}(?:\d{1,3}\.){3}\d{1,3}|[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,6})?"
        r"(?![\w]|:[0-9a-f]))",
        triggers=("::",),
    ),
)

SECRET_KINDS: frozenset[str] = frozenset(rule.kind for rule in SECRET_RULES)


def _rules_by_trigger(ignore_case: bool) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """Each literal trigger of the rules that do (or do not) ignore case, with the rules it triggers."""
    rules_of: dict[str, list[int]] = {}
    for index, rule in enumerate(SECRET_RULES):
        if rule.ignore_case == ignore_case:
            for trigger in rule.triggers:
                rules_of.setdefault(trigger, []).append(index)
    return tuple((trigger, tuple(rules)) for trigger, rules in rules_of.items())


# A text is scanned only by the rules it could trigger: the alternation of all fifteen rules runs
# at about 1 MB/s, as each position tries every rule, while the triggers are substring checks at C
# speed. Whether any trigger occurs at all is one scan of the text lowered (where every trigger
# occurs lowered): in a short line (most lines) that is faster than the substring checks, each of
# which costs a fixed setup.
_CASED_TRIGGERS = _rules_by_trigger(ignore_case=False)
_FOLDED_TRIGGERS = _rules_by_trigger(ignore_case=True)
_ANY_TRIGGER = re.compile(
    "|".join(re.escape(trigger.lower()) for trigger, _ in _CASED_TRIGGERS + _FOLDED_TRIGGERS)
)
_SHORT_LINE_CHARS = 256
_WITHOUT_TRIGGERS = frozenset(index for index, rule in enumerate(SECRET_RULES) if not rule.triggers)
_SHAPE_SEARCHES = tuple(
    (index, tuple(re.compile(shape).search for shape in rule.shapes))
    for index, rule in enumerate(SECRET_RULES)
    if rule.shapes
)


# Under re.IGNORECASE these four match an ASCII letter, though str.lower() does not make them one
# (found by matching [a-z] against every code point): fold them first, so no trigger misses them.
_FOLD_TWINS = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"})


def _folded(text: str) -> str:
    """`text` lowered, with the twins folded: every trigger of a rule that ignores case is then found."""
    if not text.isascii() and ("\u0130" in text or "\u0131" in text or "\u017f" in text or "\u212a" in text):
        text = text.translate(_FOLD_TWINS)
    return text.lower()


def _triggered_rules(text: str) -> tuple[int, ...]:
    """The rules whose triggers and shapes `text` holds: those that could match in it."""
    folded = _folded(text)
    rules = set(_WITHOUT_TRIGGERS)
    if len(text) > _SHORT_LINE_CHARS or _ANY_TRIGGER.search(folded):
        rules.update([index for trigger, indices in _CASED_TRIGGERS if trigger in text for index in indices])
        rules.update(
            [index for trigger, indices in _FOLDED_TRIGGERS if trigger in folded for index in indices]
        )
    for index, searches in _SHAPE_SEARCHES:
        if index in rules:
            for search in searches:
                if search(text) is None:
                    rules.discard(index)
                    break
    return tuple(sorted(rules))


def _alternation(rules: tuple[int, ...]) -> re.Pattern[str]:
    """One pattern for these rules, in their order, so at one position the earlier rule still wins."""
    return re.compile(
        "|".join(f"(?P<p{i}>{SECRET_RULES[i].context})(?P<s{i}>{SECRET_RULES[i].secret})" for i in rules),
        re.S,
    )


# Few sets of rules occur (most lines trigger none, or one or two).
_alternations = BoundedCache(_alternation, max_entries=256, max_key_length=len(SECRET_RULES))


_KIND_OF_GROUP = {f"s{i}": rule.kind for i, rule in enumerate(SECRET_RULES)}


def _placeholder(match: re.Match[str]) -> str:
    secret_group = match.lastgroup
    kept_prefix = match.group("p" + secret_group[1:])
    return f"{kept_prefix}<{_KIND_OF_GROUP[secret_group]}>"


_ALL_RULES = tuple(range(len(SECRET_RULES)))
# Only these rules can match across a line break: a private key's body, and the whitespace after
# `Bearer`, `Basic` or a secret's name (`password:` then the value on the next line).
_SPANS_LINES = "-----BEGIN "
_OPENING_KINDS = ("bearer_token", "basic_auth", "assigned_secret")
_OPEN_LINE_END = re.compile(rf"(?i:(?:bearer|basic|{_SECRET_NAMES})\\?[\"']?\s*(?:[:=]\s*)?)\Z")


def _redact_scan(text: str, rules: tuple[int, ...]) -> str:
    return _alternations[rules].sub(_placeholder, text) if rules else text


def _redact_any_line(line: str) -> tuple[str, bool]:
    """The line redacted, and whether a secret could start at its end and go on in the next line."""
    rules = _triggered_rules(line)
    if not rules:
        return line, False
    opens = any(SECRET_RULES[i].kind in _OPENING_KINDS for i in rules)
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
    get = _redacted_lines.get
    redacted, opens = zip(*[get(line) or _redacted_lines[line] for line in text.split("\n")], strict=True)
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
