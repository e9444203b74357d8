"""Secret redaction: credentials and personal data never travel past the flattening step.

Every message is redacted once, when it leaves its batch, so the corpus, the report, the alerts
and the logs downstream only ever see the placeholders (`<kind>`): secrets found by their format,
by their context (a URL's userinfo, a header, a name that says what the value is) or by their look
(`SECRET_RULES`, then `_random_token_spans`), whole or split by a line break (`_wrapped_spans`).

Every pattern runs in time linear in the text: on RE2 (google-re2), as Python's backtracking `re`
took 110 s on one 100,000-character line; RE2 has no lookarounds, so what a rule needs around a
secret is matched and kept, and what RE2 cannot state is checked in code on the match, in time
linear in it. The few patterns left to Python's `re` have a fixed width, which it scans linearly.
"""

import math
import operator
import re
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import re2

from faultline.caching import BoundedCache

NAMED_SECRET = "<assigned_secret>"

# A span of the text: where a secret starts and ends, and its kind.
Span = tuple[int, int, str]


@dataclass(frozen=True)
class SecretRule:
    """A kind of secret: the secret (a regex, replaced by `<kind>`), what marks it before and after it
    (regexes, kept), and for what RE2 cannot say, a check in code of the secret found: given the
    text and the span the regex matched, the span of the secret after all, or None when it is none."""

    kind: str
    secret: str
    before: str = ""
    after: str = ""
    refine: Callable[[bytes, Span], Span | None] | None = None


# Names ---------------------------------------------------------------------------------------
# One rule for names, in fields and in text: a name names a secret when one of its parts (split at
# `_`, `-`, `.`, spaces, digits and camelCase humps) is a secret word, or ends with one of the
# long words (`PGPASSWORD`, `csrftoken`), or two neighbour parts make a secret pair (`api_key`).
# Short words count only as a whole part: `author`, `passage`, `compass` and `bypass` are no secrets.

# Secret words a part may end with (and their plurals): long enough to mean nothing else.
_LONG_WORDS = (
    "password", "passwd", "passphrase", "secret", "token", "credential", "signature", "authorization",
    "contraseña", "contrasena", "passwort", "kennwort", "wachtwoord", "lösenord", "losenord", "salasana",
    "motdepasse", "mot de passe", "пароль", "密码", "パスワード", "비밀번호",
    "apikey", "accesskey", "privatekey", "secretkey", "sessionid", "sessionkey",
    "accountkey", "clientsecret", "authkey", "masterkey", "signingkey", "encryptionkey", "storepass",
    "keypass",
)  # fmt: skip
# Secret words that must be a whole part (or its plural).
_SHORT_WORDS = (
    "pass", "pwd", "pw", "auth", "sig", "cred", "creds", "cookie", "session", "jwt", "bearer",
    "dsn",  # a DSN holds a password in its URL
    "senha", "haslo", "hasło",  # Portuguese and Polish: `resenha` is a review
)  # fmt: skip
# Two parts that name a secret together; either alone does not (`key`, `api`, `private`).
_FIRST_OF_PAIR = (
    "api", "access", "private", "priv", "secret", "auth", "service", "account", "client", "master",
    "encryption", "signing", "storage", "app", "ssh", "gpg", "pgp", "license", "db", "database",
    "shared", "subscription", "sentry", "hmac", "aes", "cipher", "crypto",
)  # fmt: skip
_SECRET_PAIRS = frozenset(
    {(first, "key") for first in _FIRST_OF_PAIR}
    | {
        ("key", "pass"),
        ("db", "pass"),
        ("database", "pass"),
        ("connection", "string"),
        ("access", "signature"),
    }
)

# Parts of a name: camelCase humps, runs of capitals (`APIKey`: `API`, `Key`), of digits, of letters.
_HUMP = re.compile(r"([a-z0-9])([A-Z])")
_CAPITALS_THEN_HUMP = re.compile(r"([A-Z])([A-Z][a-z])")
_LETTER_DIGIT = re.compile(r"([^\W\d_])(\d)|(\d)([^\W\d_])")
_NOT_A_PART = re.compile(r"[\W_]+")


def _name_parts(name: str) -> list[str]:
    """`name` split at separators, digits and humps, lowered: `DB_PASSWORD2` -> db, password, 2."""
    spaced = _CAPITALS_THEN_HUMP.sub(r"\1 \2", _HUMP.sub(r"\1 \2", name))
    spaced = _LETTER_DIGIT.sub(lambda m: " ".join(g for g in m.groups() if g), spaced)
    return [part for part in _NOT_A_PART.split(spaced.lower()) if part]


def _is_secret_part(part: str) -> bool:
    singular = part[:-1] if part.endswith("s") else part
    return (
        part in _SHORT_WORDS
        or singular in _SHORT_WORDS
        or any(part.endswith(word) or singular.endswith(word) for word in _LONG_WORDS)
    )


def names_a_secret(name: str) -> bool:
    """Whether a field called `name` holds a secret by its name alone, whatever its value looks like."""
    parts = _name_parts(name)
    return any(_is_secret_part(part) for part in parts) or any(
        pair in _SECRET_PAIRS for pair in zip(parts, parts[1:], strict=False)
    )


def _caseless(word: str) -> str:
    """`word` as a regex in any case; RE2 folds `ſ` and the Kelvin sign, not the Turkish i's: add them."""
    return "".join("[iI\\x{130}\\x{131}]" if char == "i" else re.escape(char) for char in word)


def _either(words) -> str:
    return "|".join(_caseless(word) for word in sorted(words, key=len, reverse=True))


# The same rule for names in text. A long word may follow anything; a short word follows the text's
# start, a character that is no letter, or a lower-case letter or digit when it starts a hump
# (`dbPass`); those are matched, and kept, as RE2 has no lookbehind. Up to two more parts may follow
# (`password_file`, `tokenExpiresAt`).
_LONG = rf"(?i:(?:{_either(_LONG_WORDS)})s?|(?:{_either(_FIRST_OF_PAIR)})[_. -]?{_caseless('key')}s?"
_LONG += rf"|(?:{_either(('key', 'db', 'database'))})[_.-]?{_caseless('pass')})"
_SHORT_WORD = rf"(?i:(?:{_either(_SHORT_WORDS)})s?)"
_SHORT_HUMP = "[a-z0-9](?:" + "|".join(w.capitalize() + "|" + w.upper() for w in _SHORT_WORDS) + ")"
_SHORT = rf"(?:^|[^A-Za-z]){_SHORT_WORD}|{_SHORT_HUMP}"
_TAIL = r"(?:[_.-][A-Za-z0-9]+|[A-Z][a-z0-9]*){0,2}"
SECRET_NAME = rf"(?:{_LONG}|{_SHORT}){_TAIL}"
# A command line option's name: the secret's name its last parts (`--password`, `--http-password`).
_OPTION_NAME = rf"--(?:[A-Za-z0-9]+[_-])*(?:{_LONG}|{_SHORT_WORD}|[A-Za-z0-9]*{_SHORT_HUMP}){_TAIL}"
# Names whose value may follow a space alone (`.netrc`'s `password x`, keytool's `-storepass x`,
# `aws configure set aws_secret_access_key x`): a password's and a key pair's, not `token` or
# `secret` (`secret db-creds-2 not found` names a Kubernetes object).
_SPACED_NAME = rf"(?i:(?:{_either(('password', 'passwd', 'passphrase', 'storepass', 'keypass'))})s?"
_SPACED_NAME += rf"|(?:{_either(_FIRST_OF_PAIR)})[_. -]?{_caseless('key')}s?)"

# Values ----------------------------------------------------------------------------------------
# Quoted: to the closing quote or the line's end. Unquoted: an object or array on the line, or the
# first word, then more words while none is a name (`=`/`:` after it, checked in code) and none
# opens a quote or a placeholder. What assigns (a closing quote, `=`, `:`, `:=`, `=>`) and the
# opening quote are matched with the value and kept by `_assigned_value`: one rule for every way of
# quoting, where RE2 would otherwise compile the names once for each.
_OPERATOR = r"(?::=|::|=>|={1,3}|:)"
_ASSIGNS = rf"\\?[\"'`]?\]?\s*{_OPERATOR}\s*"
# In double quotes, an escape is part of the value (`"a\\"b"`), unless the quote that opened it was
# escaped itself (`\\"password\\": \\"value\\"`, JSON inside a JSON string): an escaped quote closes it.
_QUOTED = r""""(?:[^"\\\r\n]|\\[^\r\n])+|\\"(?:[^"\\\r\n]|\\[^"\r\n])+|'[^'\r\n]+|`[^`\r\n]+"""
_UNQUOTED = r"\{[^}\r\n]*\}?|\[[^\]\r\n]*\]?|[^\s\"'`<>{\[&;=:][^\s&;]*(?:[ \t]+[^\s=:&;\"'`<>]+)*"
_VALUE_START = re.compile(rb"""\\?["'`]?\]?\s*(?::=|::|=>|={1,3}|:)?\s*(\\?["'`])?""")
_NAME_END = (b"=", b":")
_SPACES_THEN = re.compile(rb"[ \t]*(.?)")  # the next character that is no space: linear
_ONLY_PLACEHOLDERS = re.compile(rb"(?:<[a-z_]+>)+")
# `&` ends an unquoted value only where a parameter's name follows (`sig=x&se=2026`): `pass=ab&3` is
# one value. Each check reads what the next piece then takes, so the text is read once.
_AMPERSAND_GOES_ON = re.compile(rb"&+(?![A-Za-z_][A-Za-z0-9_.\[\]-]*=)[^\s&;\"'`<>]+")


# `auth.example.com:443`, `token.svc.local:8080`: a host named with a secret's word and its port,
# not an assignment; a name whose last dotted part is a secret's word (`db.password:1234`) is one.
_PORT = re.compile(rb":[0-9]{1,5}(?![0-9A-Za-z_])")
_LAST_DOTTED_LABEL = re.compile(rb"\.([A-Za-z][A-Za-z0-9-]{0,62})$")


def _is_host_and_port(data: bytes, start: int) -> bool:
    if _PORT.match(data, start) is None:
        return False
    label = _LAST_DOTTED_LABEL.search(data, max(0, start - 64), start)
    return label is not None and not names_a_secret(label[1].decode("ascii"))


def _assigned_value(data: bytes, span: Span) -> Span | None:
    """The value alone, without what assigns it and its opening quote; an unquoted value's last word
    given back when it is the name of the next assignment (`password=a b host=x`)."""
    start, stop, kind = span
    if _is_host_and_port(data, start):
        return None
    opening = _VALUE_START.match(data, start, stop)
    start = opening.end()
    if _ONLY_PLACEHOLDERS.fullmatch(data, start, stop):
        return None  # redacted already
    if opening[1] is None:
        while (more := _AMPERSAND_GOES_ON.match(data, stop)) is not None:
            stop = more.end()
    if opening[1] is None and _SPACES_THEN.match(data, stop)[1] in _NAME_END:
        space = max(data.rfind(b" ", start, stop), data.rfind(b"\t", start, stop))
        if space > start:
            stop = start + len(data[start:space].rstrip(b" \t"))
    return (start, stop, kind) if start < stop else None


_SCHEME = re.compile(rb"([A-Za-z][A-Za-z0-9._-]*)[ \t]+(?=\S)")
_KIND_OF_SCHEME = {b"bearer": "bearer_token", b"basic": "basic_auth"}


def _header_value(data: bytes, span: Span) -> Span | None:
    """An `Authorization` header's credentials after the scheme (kept), of the scheme's kind."""
    value = _assigned_value(data, span)
    if value is None:
        return None
    start, stop, kind = value
    scheme = _SCHEME.match(data, start, stop)
    if scheme is None:
        return value
    return scheme.end(), stop, _KIND_OF_SCHEME.get(scheme[1].lower(), kind)


_SPACES = b" \t"


def _spaced_value(data: bytes, span: Span) -> Span | None:
    """A value after a name and spaces: 8 characters or more, not a path or a URL (the regex wants a
    letter and a digit in it); of the kind of the token it is, if a rule knows its format."""
    start, stop, kind = span
    while data[start] in _SPACES:
        start += 1
    value = data[start:stop]
    if len(value) < 8 or value[:1] in (b"/", b".", b"~") or b"://" in value:
        return None
    found = _RULES.search(data, start, stop)
    if found is not None and found.span(found.lastindex) == (start, stop):
        kind = SECRET_RULES[found.lastindex - 1].kind
    return start, stop, kind


def _quoted_value(data: bytes, span: Span) -> Span | None:
    """A quoted value without its opening quote, unless it is placeholders."""
    start, stop, kind = span
    start += 2 if data[start : start + 1] == b"\\" else 1
    return None if _ONLY_PLACEHOLDERS.fullmatch(data, start, stop) else (start, stop, kind)


def _token(data: bytes, span: Span) -> Span | None:
    """Not a word: 8 characters or more, a digit or a symbol among them (`Bearer authentication`)."""
    secret = data[span[0] : span[1]]
    return span if len(secret) >= 8 and not secret.isalpha() else None


_SPACE = r"[\s\v\p{Z}\x{85}]"  # Unicode's spaces too (RE2's \s is ASCII)
_NON_ASCII = r"\x{80}-\x{10FFFF}"  # other scripts as one range: \p{L} compiles to thousands of steps
_PEM_DASHES = r"-{3,5} ?"
_PRIVATE_KEY_LINE = r"[ A-Z0-9]*PRIVATE KEY(?: BLOCK)? ?-{3,5}"
_HEX = "[0-9A-Fa-f]{1,4}"
_IPV4 = r"(?:(?:25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])"
# A rule that starts with a run of some characters starts where such a run does (after a character
# that is none of them): a match starting inside the run would otherwise keep RE2 reading to the
# run's end before it can report any other match in it, again for each: `1.1.1.1...` took time
# quadratic in its length under the e-mail rule.
_URL_SCHEME = r"(?:^|[^A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*://"
# A character of a percent-encoded URL's userinfo: any but an encoded `/`, `:` or `@` (%2F, %3A, %40).
_ENCODED_USERINFO = (
    r"(?:[A-Za-z0-9._~!$*+,;=()'-]|%(?:[013-9A-Fa-f][0-9A-Fa-f]|2[0-9A-Ea-e]|3[0-9B-Fb-f]|4[1-9A-Fa-f]))"
)
# A password may hold `/` and `@` (not valid in a URL, but typed so): it goes to the token's last `@`.
_USERINFO = r"[^\s\"'<>\\]*"
_WORD_START = r"(?:^|[^A-Za-z])"

# By format: PEM, PGP, OpenSSH and PuTTY private keys; every token detect-secrets' plugins know
# (AWS, Artifactory, Discord, GitHub, GitLab, JWT, Mailchimp, npm, OpenAI, PyPI, SendGrid, Slack,
# Square, Stripe, Telegram, Twilio) and Google's, Anthropic's, Hugging Face's, Docker Hub's, Vault's,
# Postman's, Grafana's, New Relic's, Linear's, Sentry's, Shopify's, DigitalOcean's, Atlassian's,
# Mailgun's, Databricks' and age's; Slack, Discord and Teams webhook URLs; e-mail, IPv4 and IPv6
# addresses. By context: the userinfo of a URL of any scheme (the user empty too, or the URL
# percent-encoded), of Go's MySQL DSN, an Oracle thin URL and Oracle's tools' `user/password`; an
# Authorization header of any scheme, a cookie; Bearer and Basic credentials; a value assigned to a
# secret's name, quoted or not, percent-encoded, after a space (a password's, a key's), in an XML
# element, or given as a `value` beside the name; passwords of MySQL, MongoDB, redis-cli and
# registry logins on their command lines; GitHub Actions' masked values; detect-secrets' IBM,
# Cloudant and SoftLayer keys.
# Order matters: at one position the earlier rule wins, so credentials in a URL go before the
# e-mail rule would read `user:pw@host`, and a header before the names in it.
SECRET_RULES: tuple[SecretRule, ...] = (
    SecretRule(
        "private_key",
        rf"(?s:.*?)(?:{_PEM_DASHES}END{_PRIVATE_KEY_LINE}|\z)",
        before=rf"{_PEM_DASHES}BEGIN{_PRIVATE_KEY_LINE}",
    ),
    SecretRule(
        "private_key", r"(?s:.*?)(?:Private-MAC:[ \t]*[0-9a-fA-F]+|\z)", before=r"PuTTY-User-Key-File-\d+:"
    ),
    SecretRule(
        "webhook_url",
        r"[A-Za-z0-9_/+-]+",
        before=r"(?i:https?://hooks\.slack\.com/(?:services|workflows|triggers)/)",
    ),
    SecretRule(
        "webhook_url",
        r"[0-9]+/[A-Za-z0-9_-]+",
        before=r"(?i:https?://(?:(?:canary|ptb)\.)?discord(?:app)?\.com/api/webhooks/)",
    ),
    SecretRule(
        "webhook_url",
        r"[^\s\"'<>]+",
        before=r"(?i:https?://(?:[A-Za-z0-9-]+\.)*(?:webhook\.office\.com/webhookb2|outlook\.office\.com/webhook)/)",
    ),
    # user:password@ of any scheme, the user empty too; a password holding `@` ends at the last one.
    SecretRule("url_credentials", rf"[^\s/:@\"'<>\\]*:{_USERINFO}", before=_URL_SCHEME, after="@"),
    SecretRule("url_credentials", r"[A-Za-z0-9._~%+-]{16,}", before=_URL_SCHEME, after="@"),  # a token alone
    # Go's MySQL DSN, user:pass@tcp(host)/db; a password holding a colon is cut there, as a pattern
    # that could go on over colons would keep RE2 reading a run of `a:a:a:...` to its end at each.
    SecretRule(
        "url_credentials",
        r"[^\s/:@\"'<>\\(=,;]*:[^\s/:\"'<>\\]*",
        before=r"(?:^|[\s/:@\"'<>\\(=,;])",
        after=r"@(?:tcp6?|udp6?|unix(?:gram|packet)?)\(",
    ),
    # A URL percent-encoded in another's query (`?redirect=https%3A%2F%2Fuser%3Apw%40host`).
    SecretRule(
        "url_credentials",
        rf"{_ENCODED_USERINFO}*%3[Aa](?:{_ENCODED_USERINFO}|%3[Aa])*",
        before=r"(?:^|[^A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*%3[Aa]%2[Ff]%2[Ff]",
        after="%40",
    ),
    # Oracle's tools' `user/password@db` (`sqlplus scott/tiger@orcl`, `expdp system/pw`).
    SecretRule(
        "url_credentials",
        r"[^\s/@\"']+",
        before=r"(?:^|[^A-Za-z0-9_])(?:sqlplus|sqlldr|expdp|impdp|exp|imp|rman|dgmgrl)\b[^\r\n]*?[ \t]"
        + r"[A-Za-z0-9_$#]+/",
    ),
    SecretRule("url_credentials", r"[^\s@\"']+", before=r"(?i:oracle:thin:)[^\s/@:\"']*/", after="@"),
    # An Authorization header of any scheme, a cookie: to the closing quote or the line's end.
    SecretRule(
        "auth_header",
        rf"{_ASSIGNS}(?:{_QUOTED}|[^\r\n]+)",
        before=_WORD_START + r"(?i:(?:proxy-)?authori[sz]ation)",
        refine=_header_value,
    ),
    SecretRule(
        "cookie",
        rf"{_ASSIGNS}(?:{_QUOTED}|[^\r\n]+)",
        before=_WORD_START + r"(?i:(?:set-)?cookie)",
        refine=_assigned_value,
    ),
    # detect-secrets' Cloudant, IBM Cloud IAM, IBM COS HMAC and SoftLayer keys: a vendor's prefix, a
    # key word and a value of their shape, assigned by a space too.
    SecretRule(
        "assigned_secret",
        r"[A-Za-z0-9_-]{24,}",
        before=_WORD_START
        + r"(?i:cloudant|clou|cl|softlayer|sl|ibm[_-]?cloud[_-]?iam|cloud[_-]?iam|ibm[_-]?cloud|ibm[_-]?iam"
        + r"|ibm[_-]?cos[_-]?hmac|cos[_-]?hmac|ibm[_-]?cos|ibm|iam|cos)[_-]?(?i:api)?[_-]?"
        + r"(?i:key|pwd|pw|password|pass|token|secret[_-]?(?:access)?[_-]?key)[\"']?\]?[ \t]*"
        + r"(?::=|=>|::|=|:|[ \t])[ \t]*[\"']?",
    ),
    SecretRule(
        "assigned_secret", r"[A-Za-z0-9]{64}", before=r"(?i:https?://api\.softlayer\.com/soap/v3(?:\.1)?/)"
    ),
    # name=value, name: value, "name": "value", name 'value'; --name value
    SecretRule(
        "assigned_secret",
        rf"{_ASSIGNS}(?:{_QUOTED}|{_UNQUOTED})|[ \t]+(?:{_QUOTED})",
        before=SECRET_NAME,
        refine=_assigned_value,
    ),
    SecretRule(
        "assigned_secret",
        rf"[ \t]+(?:{_QUOTED}|[^\s\"'`<-][^\s]*)",
        before=_OPTION_NAME,
        refine=_assigned_value,
    ),
    # A name then spaces then a value that is no word: `password Netrc9Pw`, `-storepass Jks9Pw`.
    SecretRule(
        "assigned_secret",
        r"[ \t]+[^\s\"'`<>]*(?:[A-Za-z][^\s\"'`<>]*[0-9]|[0-9][^\s\"'`<>]*[A-Za-z])[^\s\"'`<>]*",
        before=_SPACED_NAME,
        refine=_spaced_value,
    ),
    # A secret's name given as the value of a `name` or `key`, its value as that of `value`:
    # Kubernetes' env (`- name: DB_PASSWORD` then `value: x`, in YAML or JSON), .NET's and Java's
    # `<add key="ApiKey" value="x"/>`. Over a line break only after the name unquoted, as a line
    # that ends with a secret's name is read with the next (`_OPENS_LINE`).
    SecretRule(
        "assigned_secret",
        rf"{_ASSIGNS}(?:{_QUOTED}|{_UNQUOTED})",
        before=rf"{_WORD_START}(?i:name|key)[\"'`]?[ \t]*[:=][ \t]*[\"'`]?[A-Za-z0-9_.-]*{SECRET_NAME}"
        + r"(?:[\"'`]?[ \t]*[,;]?[ \t]*|[ \t]*\r?\n[ \t]*)[\"'`]?(?i:value)",
        refine=_assigned_value,
    ),
    # A quoted name, a comma and a quoted value: `define('DB_PASSWORD', 'x')`, `setenv("TOKEN", "x")`.
    SecretRule(
        "assigned_secret", _QUOTED, before=rf"{SECRET_NAME}\\?[\"'`][ \t]*,[ \t]*", refine=_quoted_value
    ),
    # An XML element: `<password>x</password>` (Maven's settings.xml, .NET's configs).
    SecretRule("assigned_secret", r"[^<\r\n]+", before=rf"{SECRET_NAME}>", after="</"),
    # A secret's parameter in a percent-encoded query (`%3Faccess_token%3Dx%26`): to an encoded `&`.
    SecretRule(
        "assigned_secret",
        r"(?:[^\s%&#\"'<>]|%(?:[013-9A-Fa-f][0-9A-Fa-f]|2[0-57-9A-Fa-f]))+",
        before=rf"{SECRET_NAME}%3[Dd]",
    ),
    # A URL's `key` parameter (Google's APIs): a key when it is no word.
    SecretRule("assigned_secret", r"[^\s&#\"'<>]+", before=r"[?&](?i:key)=", refine=_token),
    SecretRule(
        "assigned_secret",
        r"[^\"'\r\n]+",
        before=rf"(?i:identified){_SPACE}+(?i:by){_SPACE}+(?:(?i:password){_SPACE}+)?[\"']",
    ),
    # MySQL's clients take the password glued to -p (`mysql -u root -pS3cret db`); -P is the port.
    SecretRule(
        "assigned_secret",
        r"'[^'\r\n]*'|\"[^\"\r\n]*\"|[^\s\"'`]+",
        before=r"(?:^|[^A-Za-z0-9_])(?:mysql(?:dump|admin|import|check)?|mariadb)\b[^\r\n]*?[ \t]-p",
    ),
    # A registry login's -p, sshpass's -p, curl's -u user:password.
    SecretRule(
        "assigned_secret",
        r"'[^'\r\n]*'|\"[^\"\r\n]*\"|[^\s\"'`]+",
        before=r"(?:^|[^A-Za-z0-9_])(?:(?:docker|podman|buildah|skopeo|oras|nerdctl|helm|az)\b"
        + r"[^\r\n]*?[ \t]login\b[^\r\n]*?[ \t]-p|sshpass[ \t]+-p)[ \t]*",
    ),
    # A registry login's password piped in (`echo pw | docker login --password-stdin`, as `set -x`
    # prints it) or given as a here-string (`--password-stdin <<< pw`).
    SecretRule(
        "assigned_secret",
        r"'[^'\r\n]+'|\"[^\"\r\n]+\"|[^\s\"'`|]+",
        before=r"(?:^|[^A-Za-z0-9_])(?:echo|printf)[ \t]+(?:-[nE]+[ \t]+)?",
        after=r"[ \t]*\|[ \t]*(?:sudo[ \t]+)?(?:docker|podman|buildah|skopeo|oras|nerdctl|helm|crane)\b"
        + r"[^\r\n|]*[ \t]login\b",
    ),
    SecretRule(
        "assigned_secret", r"'[^'\r\n]+'|\"[^\"\r\n]+\"|[^\s\"'`]+", before=r"--password-stdin[ \t]*<<<[ \t]*"
    ),
    # ssh-keygen's new and old passphrases (`-N 'pw'`, `-P pw`): both, when both are given, as one.
    SecretRule(
        "assigned_secret",
        r"(?:'[^'\r\n]+'|\"[^\"\r\n]+\"|[^\s\"'`-][^\s\"'`]*)"
        + r"(?:[^\r\n]*?[ \t]-[NP][ \t]*(?:'[^'\r\n]+'|\"[^\"\r\n]+\"|[^\s\"'`-][^\s\"'`]*))?",
        before=r"(?:^|[^A-Za-z0-9_])ssh-keygen\b[^\r\n]*?[ \t]-[NP][ \t]*",
    ),
    # MongoDB's shells' -p and redis-cli's -a, a space before the password.
    SecretRule(
        "assigned_secret",
        r"'[^'\r\n]*'|\"[^\"\r\n]*\"|[^\s\"'`-][^\s\"'`]*",
        before=r"(?:^|[^A-Za-z0-9_])(?:mongo(?:sh|dump|restore|import|export|files|stat|top)?\b"
        + r"[^\r\n]*?[ \t]-p|redis-cli\b[^\r\n]*?[ \t]-a)[ \t]+",
    ),
    SecretRule(
        "assigned_secret",
        r"[^\s\"'`]+",
        before=r"(?:^|[^A-Za-z0-9_])(?:curl|wget)\b[^\r\n]*?[ \t](?:-u|--user|--proxy-user|-U)(?:[ \t]+|=)"
        + r"[\"']?[^\s:\"'`]*:",
    ),
    SecretRule("bearer_token", r"[A-Za-z0-9._~+/=-]+", before=rf"(?i:bearer){_SPACE}+", refine=_token),
    SecretRule("basic_auth", r"[A-Za-z0-9+/=]+", before=rf"(?i:basic){_SPACE}+", refine=_token),
    SecretRule("github_token", r"(?:gh[pousr]_[A-Za-z0-9_]{20,}|github_pat_[A-Za-z0-9_]{20,})"),
    SecretRule(
        "gitlab_token",
        r"(?:(?:glpat|gldt|glft|glsoat|glrt|glcbt|glimt|glptt|glagent|gloas)-[A-Za-z0-9_-]{20,}"
        r"|GR1348941[A-Za-z0-9_-]{20,})",
    ),
    SecretRule("slack_token", r"(?:xox[abposrce]-[A-Za-z0-9-]{10,}|xapp-[0-9]-[A-Za-z0-9-]{10,})"),
    SecretRule("aws_access_key", r"\b(?:A3T[A-Z0-9]|ABIA|ACCA|AKIA|ASIA)[A-Z0-9]{16}\b"),
    SecretRule(
        "google_api_key", r"(?:AIza[0-9A-Za-z_-]{30,}|ya29\.[0-9A-Za-z_-]{20,}|GOCSPX-[A-Za-z0-9_-]{20,})"
    ),
    SecretRule("stripe_key", r"\b(?:(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{10,}|whsec_[A-Za-z0-9]{20,})"),
    SecretRule(
        "openai_key",
        r"\bsk-(?:(?:proj|svcacct|admin|ant-[a-z0-9]+)-[A-Za-z0-9_-]{20,}|[A-Za-z0-9_-]*T3BlbkFJ[A-Za-z0-9_-]+"
        r"|[A-Za-z0-9]{32,})",
    ),
    SecretRule("sendgrid_key", r"\bSG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}"),
    SecretRule("twilio_key", r"\b(?:AC|SK)[0-9a-z]{32}\b"),
    SecretRule("mailchimp_key", r"\b[0-9a-f]{32}-us[0-9]{1,2}\b"),
    SecretRule("npm_token", r"\bnpm_[A-Za-z0-9]{30,}"),
    SecretRule("pypi_token", r"pypi-AgE[A-Za-z0-9_-]{40,}"),
    SecretRule("discord_token", r"\b[MNO][A-Za-z0-9_-]{23,25}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,}"),
    SecretRule("telegram_token", r"\b[0-9]{8,10}:[A-Za-z0-9_-]{35}\b"),
    SecretRule("square_token", r"(?:sq0(?:csp|atp|idp)-[A-Za-z0-9_\\-]{20,}|\bEAAA[A-Za-z0-9_+-]{60,})"),
    SecretRule("artifactory_token", r"\b(?:AKC[A-Za-z0-9]{10,}|AP[0-9A-F][A-Za-z0-9]{8,})\b"),
    SecretRule(
        "api_token",
        r"\b(?:hf_[A-Za-z0-9]{30,}|dckr_pat_[A-Za-z0-9_-]{20,}|hv[sb]\.[A-Za-z0-9_-]{20,}|PMAK-[A-Za-z0-9-]{20,}"
        r"|gl(?:c|sa)_[A-Za-z0-9+/=_-]{20,}|NRAK-[A-Z0-9]{20,}|lin_api_[A-Za-z0-9]{20,}|sntry[su]_[A-Za-z0-9+/=_-]{20,}"
        r"|shp(?:at|ca|pa|ss)_[A-Fa-f0-9]{32}|do[opr]_v1_[a-f0-9]{64}|AGE-SECRET-KEY-1[A-Z0-9]{20,}"
        r"|ATATT3[A-Za-z0-9_=-]{20,}|dp\.pt\.[A-Za-z0-9]{20,}|key-[0-9a-z]{32}\b|dapi[0-9a-f]{32}\b)",
    ),
    # GitHub Actions' `::add-mask::value` (a workflow's debug log shows it): the value is a secret.
    SecretRule("assigned_secret", r"[^\r\n]+", before="::add-mask::"),
    SecretRule("jwt", r"\beyJ[A-Za-z0-9_-]{4,}={0,2}\.[A-Za-z0-9_-]{4,}={0,2}(?:\.[A-Za-z0-9_+/=-]*)*"),
    SecretRule(
        "email",
        before=rf"(?:^|[^A-Za-z0-9_.%+{_NON_ASCII}-])",
        secret=rf"[A-Za-z0-9_.%+{_NON_ASCII}-]+@[A-Za-z0-9{_NON_ASCII}-]+(?:\.[A-Za-z0-9{_NON_ASCII}-]+)*"
        rf"\.[A-Za-z{_NON_ASCII}]{{2,}}",
    ),
    SecretRule("ip_address", rf"\b{_IPV4}\b"),
    SecretRule("ip_address", rf"\b(?:{_HEX}:){{7}}{_HEX}\b"),
    # IPv6 with `::` (2001:db8::1, ::1, ::ffff:192.0.2.1), not after a letter, a digit, `:`, `.` or a
    # placeholder and not before a letter or digit: `std::string` and `Foo::Bar` are not addresses.
    SecretRule(
        "ip_address",
        rf"(?:{_HEX}(?::{_HEX}){{0,6}}::(?:(?:{_HEX}:){{0,5}}{_IPV4}|{_HEX}(?::{_HEX}){{0,6}})?"
        rf"|::(?:(?:{_HEX}:){{0,5}}{_IPV4}|{_HEX}(?::{_HEX}){{0,6}}))",
        before=r"(?:^|[^\w:.>])",
        after=r"(?:[^\w:]|:[^0-9A-Fa-f:]|:?\z)",
    ),
)

SECRET_KINDS: frozenset[str] = frozenset(rule.kind for rule in SECRET_RULES) | {
    "bearer_token",
    "basic_auth",
    "high_entropy",
}

# Where a secret could go on past the end of a line: after a secret's name (and what assigns), after
# `Bearer`, `Basic` or `IDENTIFIED BY`, only spaces and the line's end (`password:`, then the value
# on the next line). Matched with the rules, as their last alternative, so knowing costs no search.
_OPENS_LINE = rf"(?:{SECRET_NAME}|(?i:bearer|basic|identified|by))(?:{_ASSIGNS})?\s*\z"

# Each rule's secret is the one capturing group of its alternative: the group that matched names it.
_OPTIONS = re2.Options()
_OPTIONS.max_mem = 64 << 20  # room for the DFA of the rules' alternatives, not to fall back to the NFA
_ALTERNATIVES = (
    *(f"(?:{rule.before})({rule.secret})(?:{rule.after})" for rule in SECRET_RULES),
    f"({_OPENS_LINE})",
)
_RULES = re2.compile("|".join(_ALTERNATIVES).encode(), _OPTIONS)
if _RULES.groups != len(SECRET_RULES) + 1:
    raise ValueError("a secret rule holds a capturing group: write its groups as (?:...)")

# The rules are searched in parts, not as `_RULES`. RE2's DFA for all of them at once builds its
# states from every rule's progress together, and the rules that count characters (IP and e-mail
# addresses) multiply with the others: a line it has not seen before asks for new states, 18 µs a
# line on the demo's. Each part's DFA stays small and is soon built. A part is searched only if the
# text holds what every match of its rules holds: an e-mail address an `@`; an IPv4 address a `.`,
# an IPv6 address a `:`.
_UNANCHORED = re2._Anchor.UNANCHORED  # noqa: SLF001 - `search` costs 2 µs more a call in Python
_ANCHOR_START = re2._Anchor.ANCHOR_START  # noqa: SLF001
_NO_MATCH = (-1, -1)
_NO_GROUPS = re2.Options()
_NO_GROUPS.max_mem, _NO_GROUPS.never_capture = _OPTIONS.max_mem, True


@dataclass(frozen=True)
class _RulePart:
    """Some of the rules as one RE2 regex, its group k the rule `rules[k - 1]` (an index into the
    alternatives: `SECRET_RULES`, then `_OPENS_LINE`); searched only where `needs` is None or in
    the text."""

    rules: tuple[int, ...]
    needs: tuple[bytes, ...] | None = None

    def __post_init__(self) -> None:
        pattern = "|".join(_ALTERNATIVES[k] for k in self.rules).encode()
        # Where a match starts, by a search without groups: RE2 answers it with its DFA, where a
        # search for groups in a short text backtracks (BitState) through every rule. The groups
        # are then read from the match, anchored at its start.
        object.__setattr__(self, "locate", re2.compile(pattern, _NO_GROUPS)._regexp.Match)  # noqa: SLF001
        object.__setattr__(self, "read", re2.compile(pattern, _OPTIONS)._regexp.Match)  # noqa: SLF001

    def first(self, data: bytes, pos: int) -> tuple[int, int, int, int] | None:
        """The leftmost match from `pos`: where it starts, its rule's index, where the secret in it
        starts and ends."""
        start = self.locate(_UNANCHORED, data, pos, len(data))[0][0]
        if start == -1:
            return None
        spans = self.read(_ANCHOR_START, data, start, len(data))
        group = next(k for k in range(1, len(spans)) if spans[k] != _NO_MATCH)
        return start, self.rules[group - 1], *spans[group]


_NAMES = (SECRET_NAME, _OPTION_NAME, _SPACED_NAME)


def _parts() -> tuple[_RulePart, ...]:
    """The rules after a secret's name (and `_OPENS_LINE`), e-mail and IP addresses, each rule after a
    command's name (`mysql ... -p`) alone, and the others: together the names and the others took
    16 µs a line of the demo's longer lines, apart 7. A command's rule reads on to the line's end from
    the command's name (`[^\\r\\n]*?`) while a nearer match waits on it: searched with other rules,
    each search from a secret found after such a name read the line again (`pw=,sqlplus;?key=a `
    repeated took 2.9 s at 200,000 characters, `,sqlplus;,mysql -pX ` 0.63 s at 100,000 and 4x
    that at twice the length, the second in the one regex too); alone, a command's rule finds its
    next match or none, once. Each is searched only where its command's name is in the text."""
    kinds = [rule.kind for rule in SECRET_RULES]
    emails = tuple(k for k, kind in enumerate(kinds) if kind == "email")
    ip_addresses = tuple(k for k, kind in enumerate(kinds) if kind == "ip_address")
    names = (
        *(k for k, rule in enumerate(SECRET_RULES) if any(name in rule.before for name in _NAMES)),
        len(SECRET_RULES),
    )
    commands = {}
    for k, rule in enumerate(SECRET_RULES):
        if _TO_LINE_END in rule.before or _TO_LINE_END in rule.after:
            words = [words for command, words in _COMMAND_WORDS.items() if command in rule.before]
            if len(words) != 1:
                raise ValueError(f"secret rule {k} reads to the line's end: name its command's words")
            commands[k] = words[0]
    others = tuple(
        k for k in range(len(_ALTERNATIVES)) if k not in (*emails, *ip_addresses, *names, *commands)
    )
    return (
        _RulePart(names),
        _RulePart(others),
        *(_RulePart((k,), needs=words) for k, words in commands.items()),
        _RulePart(emails, needs=(b"@",)),
        _RulePart(ip_addresses, needs=(b".", b":")),
    )


_TO_LINE_END = r"[^\r\n]*"
# What the text of a match of each command's rule holds: one of its command's names, as the rule spells
# them (in this case; `expdp` holds `exp`), or for a registry login its `login` (or `sshpass`).
_COMMAND_WORDS = {
    "sqlplus": (b"sqlplus", b"sqlldr", b"exp", b"imp", b"rman", b"dgmgrl"),
    "mysql": (b"mysql", b"mariadb"),
    "login": (b"login", b"sshpass"),
    "ssh-keygen": (b"ssh-keygen",),
    "mongo": (b"mongo", b"redis-cli"),
    "curl": (b"curl", b"wget"),
}
_RULE_PARTS = _parts()


def _rule_spans(data: bytes, pos: int = 0) -> tuple[list[Span], bool]:
    """Each secret the rules find in `data` (where it starts and ends, and its kind), and whether the
    text ends where a secret could go on (`_OPENS_LINE`).

    The secrets of `_RULES`, found by its parts: the leftmost match of any part, of the earlier
    rule where two parts match at one place (RE2 sees the whole text from every `pos`, so `^` and
    `\\b` read the same). One search per secret, each from the end of the one before, so each piece
    of the text is read once: what a match needs after the secret (`@`, a last word given back) is
    bounded. A part's match that starts at or after `pos` stands, and a part without one has none
    from a later `pos` either. A part's match that the secret just found covers the start of is not
    searched for again: that search would read on to its own match's end once per secret before it
    (quadratic in `a@x.token.com:v` repeated), where the search of all the rules stops at the
    leftmost match's end; the rest of the text is searched so (`_rule_spans_as_one`)."""
    spans: list[Span] = []
    end = len(data)
    parts = [part for part in _RULE_PARTS if part.needs is None or any(b in data for b in part.needs)]
    found = {part: part.first(data, pos) for part in parts}
    while pos < end:
        matches = [(match, part) for part, match in found.items() if match is not None]
        if not matches:
            break
        (_, index, start, stop), chosen = min(matches, key=operator.itemgetter(0))
        if index == len(SECRET_RULES):
            return spans, True
        rule = SECRET_RULES[index]
        span = (start, stop, rule.kind)
        if rule.refine is not None:
            span = rule.refine(data, span)
        if span is not None:
            spans.append(span)
        pos = stop if span is None else span[1]
        if any(match[0] < pos for match, part in matches if part is not chosen):
            return _rule_spans_as_one(data, pos, spans)
        found[chosen] = chosen.first(data, pos) if pos < end else None
    return spans, False


def _rule_spans_as_one(data: bytes, pos: int, spans: list[Span]) -> tuple[list[Span], bool]:
    """`spans` and the secrets that `_RULES` finds from `pos`, one search per secret."""
    end = len(data)
    while pos < end and (match := _RULES.search(data, pos)) is not None:
        index = match.lastindex
        if index > len(SECRET_RULES):
            return spans, True
        rule = SECRET_RULES[index - 1]
        span = (*match.span(index), rule.kind)
        if rule.refine is not None:
            span = rule.refine(data, span)
        if span is not None:
            spans.append(span)
        pos = match.end(index) if span is None else span[1]
    return spans, False


# Random-looking tokens ---------------------------------------------------------------------------
# Error messages are full of hashes and ids (commit SHAs, digests, UUIDs, request ids) that a reader
# needs and that are variables the templates already take out; masking every string of high entropy
# would take them from the report and, when it misfires on words, merge errors that differ. So:
# - a quoted string is masked as detect-secrets flags one: hex of 20 characters or more with an
#   entropy over 3 bits a character, base64 over 4.5 (none in the demo's or loghub's quotes);
# - an unquoted one (`=` only as padding at its end: `key=value` is two) is masked when a piece of
#   it of 16 characters or more, between `/`, `_`, `-` and `.`, mixes lower case, capitals and
#   digits, changes between them at least every other character, and has an entropy of 3 bits or
#   more: 69% of random 16-character base64 strings, 97% of 40-character ones, none of loghub's
#   22,000 lines, on the demo only passwords and tokens. Hex (what SHAs and ids are written in) and
#   UUIDs never are: a hex secret is found by its name.
_TOKEN_RUN = re2.compile(
    rb'"[A-Za-z0-9+/=]{20,}"|\'[A-Za-z0-9+/=]{20,}\'|[A-Za-z0-9+/_.-]*[A-Za-z0-9+]{16,}[A-Za-z0-9+/_.-]*={0,2}'
)
_PIECE_BREAK = re.compile(rb"[/_=.-]+")
_MIN_PIECE = 16
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
_CLASS_OF = bytes(
    1 if byte in b"abcdefghijklmnopqrstuvwxyz" else 2 if byte in b"ABCDEFGHIJKLMNOPQRSTUVWXYZ" else
    3 if byte in b"0123456789" else 0 for byte in range(256)
)  # fmt: skip


def _entropy(text: bytes) -> float:
    """Shannon's entropy of `text`, in bits a character."""
    return -sum(n / len(text) * math.log2(n / len(text)) for n in Counter(text).values())


def _looks_random(piece: bytes) -> bool:
    classes = piece.translate(_CLASS_OF)
    if not (b"\x01" in classes and b"\x02" in classes and b"\x03" in classes):
        return False
    if sum(map(operator.ne, classes, classes[1:])) * 2 < len(piece) - 1:
        return False
    return _entropy(piece) >= 3.0


_NEXT_TOKEN_RUN = re2.compile(_TOKEN_RUN.pattern, _NO_GROUPS)._regexp.Match  # noqa: SLF001 - see _RulePart


def _token_runs(data: bytes, pos: int) -> Iterator[tuple[int, int]]:
    """Where each run `_TOKEN_RUN` matches starts and ends, from `pos` (a run is never empty)."""
    end = len(data)
    while (run := _NEXT_TOKEN_RUN(_UNANCHORED, data, pos, end)[0]) != _NO_MATCH:
        yield run
        pos = run[1]


def _random_token_spans(data: bytes, pos: int = 0, found: list[Span] = ()) -> list[Span]:
    """The random-looking tokens in `data` from `pos`, but for those within a secret `found` already
    (a password, a token), which need no look."""
    spans, covered = [], iter(found)  # `found` is in the order of the text, as the runs are
    secret = next(covered, None)
    for start, stop in _token_runs(data, pos):
        while secret is not None and secret[1] <= start:
            secret = next(covered, None)
        if secret is not None and secret[0] <= start and stop <= secret[1]:
            continue
        if data[start : start + 1] in (b'"', b"'"):  # the quotes are kept
            start, stop = start + 1, stop - 1
            quoted = data[start:stop]
            if _entropy(quoted) > (3.0 if _HEX_DIGITS.issuperset(quoted) else 4.5):
                spans.append((start, stop, "high_entropy"))
                continue
        pieces = _PIECE_BREAK.split(data[start:stop])
        if any(len(piece) >= _MIN_PIECE and _looks_random(piece) for piece in pieces):
            spans.append((start, stop, "high_entropy"))
    return spans


# Whether a short text holds anything a rule or a token could match, and from where: one search
# of all the rules together, which finds nothing on most short lines, where three or four searches
# of the parts cost more; on longer lines its DFA keeps building states (`_RulePart`). Flattening
# the demo's events, finding the secrets took 0.50x the time of one search of all the rules first
# with this bound at 100 bytes, 0.57x at 200, 0.90x at 400, and 0.66x with the parts alone.
_ANYTHING = re2.compile(_RULES.pattern + b"|" + _TOKEN_RUN.pattern, _NO_GROUPS)._regexp.Match  # noqa: SLF001
_SHORT_TEXT = 100


def _secret_spans(data: bytes) -> tuple[list[Span], bool]:
    """The secrets in `data`, and whether it ends where a secret could go on (`_OPENS_LINE`)."""
    start = 0
    if len(data) < _SHORT_TEXT:
        start = _ANYTHING(_UNANCHORED, data, 0, len(data))[0][0]
        if start == -1:
            return [], False
    spans, opens = _rule_spans(data, start)
    return spans + _random_token_spans(data, start, spans), opens


# Secrets split by a line break -----------------------------------------------------------------
# A break between two non-space characters, or after spaces that follow one (a line wrapped at a
# space that it kept): whether there is one, at RE2's speed; then where (the lookarounds have a
# fixed width, and a run of spaces fails once: linear in Python's `re`).
_ANY_WRAP = re2.compile(rb"\S[ \t]*\r?\n\S")
_WRAP = re.compile(rb"(?<=\S)[ \t]*(\r?\n)(?=\S)")
_SPACE_BYTE = re.compile(rb"\s")
_QUOTES = (b'"', b"'", b"`")


def _wrapped_spans(data: bytes) -> list[Span]:
    """Secrets that cross a line break that could wrap one (`_WRAP`), found in the text with those
    breaks taken out, as pieces of `data`: the part before the first break with the secret's kind,
    the parts after it with none; the breaks themselves are kept."""
    if _ANY_WRAP.search(data) is None:
        return []
    breaks = [match.span(1) for match in _WRAP.finditer(data)]
    pieces, glued_at, removed = [], [], [0]
    last = 0
    for start, stop in breaks:
        pieces.append(data[last:start])
        glued_at.append(start - removed[-1])
        removed.append(removed[-1] + stop - start)
        last = stop
    pieces.append(data[last:])
    glued = b"".join(pieces)
    spans = []
    for start, stop, kind in _secret_spans(glued)[0]:
        first, past = bisect_right(glued_at, start), bisect_left(glued_at, stop)
        if first == past:
            continue  # within one line: the scan of the text finds it
        spans.append((start + removed[first], breaks[first][0], kind))
        # A quoted value goes on to its closing quote, over every break; anything else to the first
        # space after a break, and over the next break only if it has none: the next line's words
        # would otherwise join an unquoted value (`password=a`, then `Error: ...`).
        quoted = glued[start - 1 : start] in _QUOTES
        end = stop + removed[past]
        for k in range(first, past):
            line_end = breaks[k + 1][0] if k + 1 < past else end
            space = None if quoted else _SPACE_BYTE.search(data, breaks[k][1], line_end)
            spans.append((breaks[k][1], space.start() if space else line_end, ""))
            if space:
                break
    return spans


def _rendered(data: bytes, spans: list[Span]) -> str:
    """`data` with each span replaced by its `<kind>` (none for a span of no kind); overlapping spans
    make one, of the first one's kind (or the next's, if it has none)."""
    spans.sort(key=lambda span: (span[0], -span[1]))
    merged = [list(spans[0])]
    for start, stop, kind in spans[1:]:
        if start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], stop)
            merged[-1][2] = merged[-1][2] or kind
        else:
            merged.append([start, stop, kind])
    out, last = [], 0
    for start, stop, kind in merged:
        out += (data[last:start], f"<{kind}>".encode() if kind else b"")
        last = stop
    out.append(data[last:])
    return b"".join(out).decode("utf-8", "surrogatepass")


def _redacted_whole(text: str) -> str:
    """`text` redacted in one piece: the reference the line-by-line path must equal."""
    return _read_with_plain_escapes_decoded(_redacted_whole_as_written, text)


def _redacted_whole_as_written(text: str) -> str:
    data = text.encode("utf-8", "surrogatepass")
    spans = _secret_spans(data)[0]
    if b"\n" in data:
        spans += _wrapped_spans(data)
    return _rendered(data, spans) if spans else text


_ASCII_SPACE = " \t\n\r\f\v"


def _redacted_line(line: str) -> tuple[str, bool, bool, bool]:
    """A line redacted on its own; whether a secret could go on from its end into the next line; and
    whether it starts, and ends (spaces and a carriage return aside), with a character that is no
    space, as a line a break could have cut a token in two (`_WRAP`)."""
    data = line.encode("utf-8", "surrogatepass")
    spans, opens = _secret_spans(data)
    body = line[:-1] if line.endswith("\r") else line
    body = body.rstrip(" \t")
    solid_end = body[-1:] not in ("", *_ASCII_SPACE)
    solid_start = line[:1] not in ("", *_ASCII_SPACE)
    return (_rendered(data, spans) if spans else line), opens, solid_start, solid_end


# Lines that recur (a message's framing, its hints; field values, scopes) are redacted once each: 14
# of a Qovery message's 16 lines do. Only short lines are kept: a long one is most likely unique,
# and caching lines of any length could hold gigabytes.
_redacted_lines = BoundedCache(_redacted_line, max_entries=16_384, max_key_length=500)
_SPANS_LINES = ("PRIVATE KEY", "PuTTY-User-Key-File")


def redact_secrets(text: str) -> str:
    """Replace every credential, e-mail address and IP address in `text` with `<kind>`.

    Linear in the length of `text` whatever it holds. The result is that of redacting the text in
    one piece (`_redacted_whole`), computed line by line, each distinct line once, unless a secret
    could cross a line: a private key, a line that ends open, or a break a token could be cut by.
    """
    return _read_with_plain_escapes_decoded(_redacted_by_lines, text)


def _redacted_by_lines(text: str) -> str:
    get = _redacted_lines.get  # a hit is a plain dict's get (see BoundedCache)
    if "\n" not in text:
        return (get(text) or _redacted_lines[text])[0]
    if any(marker in text for marker in _SPANS_LINES):
        return _redacted_whole_as_written(text)
    lines = [get(line) or _redacted_lines[line] for line in text.split("\n")]
    for (_, opens, _, solid_end), (_, _, solid_start, _) in zip(lines, lines[1:], strict=False):
        if opens or (solid_end and solid_start):
            return _redacted_whole_as_written(text)
    return "\n".join(line[0] for line in lines)


# JSON escapes --------------------------------------------------------------------------------
# A printable ASCII character escaped (`\u0070assword`): JSON needs that only for `"` and `\`, so it
# hides a name or a value from the rules (an escaped backslash is skipped, not read as one).
_PLAIN_ESCAPE = re.compile(r"\\\\|\\u00([2-6][0-9A-Fa-f]|7[0-9A-Ea-e])")  # fixed width: linear
_PLACEHOLDER = re.compile(r"<[a-z_]+>")


def _read_with_plain_escapes_decoded(redact: Callable[[str], str], text: str) -> str:
    """`text` redacted, or, when decoding its plain escapes finds more secrets, that text redacted:
    the escapes are then decoded (as `json_unescaped` does for a payload that is not JSON)."""
    redacted = redact(text)
    if "\\u00" not in text:
        return redacted
    decoded = _PLAIN_ESCAPE.sub(lambda m: chr(int(m[1], 16)) if m[1] else m[0], text)
    if decoded == text:
        return redacted
    decoded_redacted = redact(decoded)
    more = len(_PLACEHOLDER.findall(decoded_redacted)) > len(_PLACEHOLDER.findall(redacted))
    return decoded_redacted if more else redacted


_JSON_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|([\"\\/bfnrt]))")  # fixed width: linear
_ESCAPED = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def json_unescaped(text: str) -> str:
    """`text` with its JSON escapes decoded (`\\u0070assword` is `password`), surrogate pairs joined:
    what the rules must read in JSON that could not be parsed."""
    if "\\" not in text:
        return text
    decoded = _JSON_ESCAPE.sub(lambda m: chr(int(m[1], 16)) if m[1] else _ESCAPED[m[2]], text)
    return decoded.encode("utf-16", "surrogatepass").decode("utf-16", "surrogatepass")
