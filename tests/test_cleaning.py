"""Each cleaning step on hand-made inputs, then the whole chain on a framed Qovery message."""

import re

import numpy as np
import pandas as pd
import re2
from hypothesis import given, settings
from hypothesis import strategies as st

from faultline import cleaning
from faultline.cleaning import (
    PROFILES,
    build_corpus,
    clean_messages,
    combine_corpus_parts,
    corpus_part,
    extract_hint,
    is_non_empty,
    lowercase,
    mask_variable_parts,
    remove_numbers,
    remove_platform_boilerplate,
    remove_punctuation,
    remove_stop_words,
    remove_unicode,
    remove_whitespace,
    strip_framing,
    user_text_and_hint,
)
from faultline.cleaning import _replace_name as replace_name
from faultline.clustering import DocumentVectors, label_events

FRAMED = (
    "\n-------------------------------------------------------------------------------\n\n"
    " MESSAGE FOR QOVERY TEAM:\n * Execution ID: 0548486d-0605-4b64-8049-24954ceec8e0-13-1625428767\n"
    " * Scope: Build platform 'beta-build' with id 'ze9e19029'\n * Rollback message: \n\n"
    "-------------------------------------------------------------------------------\n\n"
    " \u274c \u274c \u274c MESSAGE FOR THE USER \u274c \u274c \u274c\n\n"
    " \u2709\ufe0f Error message: Qovery can't build your container image beta-build (ze9e19029) with one of "
    "the following builders: heroku/buildpacks:20. Please do provide a valid Dockerfile to build your "
    "application or contact the support.\n"
    " \ud83d\udcac Need help: Look at the hint message first. If you need more assistance, you can reach the "
    "support team on Discord (https://discord.qovery.com) or on the Qovery console "
    "(https://console.qovery.com) with the integrated chat.\n"
    " \u2139\ufe0f Hint: None builders supports Your application can't be built without providing a "
    "Dockerfile\n "
)


def series(*texts: str) -> pd.Series:
    return pd.Series(list(texts))


def test_lowercase_lowers_every_letter():
    assert lowercase(series("Build FAILED Ünïcode")).tolist() == ["build failed ünïcode"]


def test_numbers_are_removed_wherever_they_stand():
    assert remove_numbers(series("exit code 137 on port8080 v2")).tolist() == ["exit code  on port v"]


def test_punctuation_becomes_a_word_break():
    assert remove_punctuation(series("beta-build: failed (exit); snake_case")).tolist() == [
        "beta build  failed  exit   snake case"
    ]


def test_stop_words_go_but_negations_stay():
    assert remove_stop_words(series("the file was not found and there is no such image")).tolist() == [
        "file not found no image"
    ]


def test_single_letters_left_by_contractions_go_with_the_stop_words():
    assert remove_stop_words(series("can t build")).tolist() == ["build"]


def test_whitespace_collapses_to_single_spaces():
    assert remove_whitespace(series("  a \n\t b   c ")).tolist() == ["a b c"]


def test_unicode_is_folded_to_ascii_and_emoji_dropped():
    assert remove_unicode(series("\u274c d\u00e9ploiement \u2709\ufe0f \u00e9chou\u00e9")).tolist() == [
        "deploiement echoue"
    ]


def test_non_empty_tells_apart_texts_that_kept_a_word():
    assert is_non_empty(series("word", "")).tolist() == [True, False]


def test_framing_is_stripped_to_the_error_message_and_hint():
    text = strip_framing(FRAMED)
    assert text.startswith("Qovery can't build your container image app (id) with one of")
    assert "None builders supports" in text
    for framing in ("Execution ID", "MESSAGE FOR", "Need help", "discord", "Hint:", "Error message:", "---"):
        assert framing.lower() not in text.lower()


def test_message_without_framing_is_kept_whole():
    assert strip_framing("plain failure: disk full") == "plain failure: disk full"


def test_the_scope_names_are_masked_only_as_whole_names():
    message = FRAMED.replace("beta-build (", "beta-build-v2 (")
    assert "app-v2" not in strip_framing(message)
    assert "beta-build-v2" in strip_framing(message)


def test_variable_parts_are_masked_by_kind():
    masked = mask_variable_parts(
        "clone https://github.com/acme/shop.git at /srv/app/main.py"
        " id 0548486d-0605-4b64-8049-24954ceec8e0-13-1 sha 3f9a1c2e7b at 2024-05-01T10:00:00Z on api.acme.io"
        " pod web-x2x9q from <ip_address> <email> <jwt>"
    )
    assert masked.split() == [
        "clone",
        "url",
        "at",
        "path",
        "id",
        "id",
        "sha",
        "hash",
        "at",
        "time",
        "on",
        "host",
        "pod",
        "web-",
        "id",
        "from",
        "ip",
        "email",
        "secret",
    ]


def test_masking_with_a_placeholder_uses_it_for_every_kind():
    assert mask_variable_parts("see https://x.io/a and /var/log/x", placeholder="<*>") == "see <*> and <*>"


def test_boilerplate_step_runs_before_numbers_so_urls_and_ids_go_whole():
    text = remove_platform_boilerplate(series("get http://10.0.0.1:8080/health failed for 3f9a1c2e7b"))
    assert text.iloc[0].split() == ["get", "url", "failed", "for", "hash"]


def test_framed_message_cleans_to_its_distinctive_words():
    assert clean_messages(series(FRAMED)).tolist() == [
        "qovery build container image app id following builders heroku buildpacks provide valid dockerfile "
        "build application contact support none builders supports application built providing dockerfile"
    ]


def test_messages_differing_only_in_variable_parts_clean_to_the_same_text():
    first = FRAMED
    second = (
        FRAMED.replace("beta-build", "shop-api")
        .replace("ze9e19029", "z1a2b3c4d")
        .replace(
            "0548486d-0605-4b64-8049-24954ceec8e0-13-1625428767", "d5ab51f0-94d3-4671-8dc6-77fc228f2e35-6-1"
        )
    )
    assert clean_messages(series(first, second)).nunique() == 1


def test_corpus_gives_each_event_a_variant_kept_once_with_its_count_and_first_message():
    other_execution = FRAMED.replace("0548486d-0605-4b64-8049-24954ceec8e0-13-1625428767", "e-2-7")
    events = pd.DataFrame(
        {"row_id": [10, 10, 11, 12], "event_index": [0, 1, 0, 0]}
        | {"message": [FRAMED, "\u274c\u274c", other_execution, "---------- 123"]}
    )
    corpus = build_corpus(events)
    assert corpus.events[["row_id", "event_index"]].values.tolist() == [[10, 0], [10, 1], [11, 0], [12, 0]]
    # The two framed messages differ in their execution id only, which the user-facing text drops.
    assert corpus.events["variant"].tolist() == [0, 1, 0, 2]
    assert corpus.variants["n_events"].tolist() == [2, 1, 1]
    assert corpus.variants["has_text"].tolist() == [True, False, False]
    assert corpus.variants.loc[0, "message"] == FRAMED
    assert corpus.variants.loc[0, "error_text"].startswith("Qovery can't build your container image app (id)")


def test_a_corpus_combined_from_parts_equals_the_corpus_of_the_whole():
    messages = [
        "pod api-7f9c restarted after 3 failures",
        "disk full on /var",
        "pod web-1a2b restarted after 12 failures",
        FRAMED,
        "disk full on /data",
        "pod worker restarted after 1 failures",
    ]
    events = pd.DataFrame({"row_id": range(6), "event_index": 0, "message": messages})
    whole = build_corpus(events)
    in_parts = combine_corpus_parts([corpus_part(events.iloc[:2]), corpus_part(events.iloc[2:])])
    pd.testing.assert_frame_equal(in_parts.events, whole.events)
    pd.testing.assert_frame_equal(in_parts.variants, whole.variants)
    pd.testing.assert_frame_equal(in_parts.hints, whole.hints)


def test_the_hint_is_extracted_from_the_framing():
    assert (
        extract_hint(FRAMED)
        == "None builders supports Your application can't be built without providing a Dockerfile"
    )
    assert extract_hint("no framing, no hint") == ""


def test_corpus_carries_the_raw_and_cleaned_hint_of_each_event():
    corpus = build_corpus(pd.DataFrame({"message": [FRAMED, "disk full", FRAMED]})).per_event()
    assert corpus["hint_cleaned"].tolist() == [
        "none builders supports application built providing dockerfile",
        "",
    ] + ["none builders supports application built providing dockerfile"]
    assert corpus["hint_hint"][0] == extract_hint(FRAMED)
    assert corpus["hint_n_events"].tolist() == [2, 1, 2]


def test_quantities_with_units_are_masked_whole():
    assert mask_variable_parts("limit 512Mi, 1.5Gi, 30s, 250ms, 95% used").split() == [
        "limit",
        "quantity",
        ",",
        "quantity",
        ",",
        "quantity",
        ",",
        "quantity",
        ",",
        "quantity",
        "used",
    ]


def test_messages_differing_in_their_variable_parts_share_a_template_and_a_cleaned_text():
    corpus = build_corpus(
        pd.DataFrame(
            {
                "message": [
                    "pod api-7f9c restarted after 3 failures on node-12.eu-west.internal",
                    "pod web-1a2b restarted after 12 failures on node-4.eu-west.internal",
                    "pod worker restarted after 1 failures on /var/run/x",
                ]
            }
        )
    ).per_event()
    assert corpus["variant_template"].nunique() == 1
    assert corpus.loc[0, "variant_template"] == "pod <*> restarted after <*> failures on <*>"
    assert corpus["variant_cleaned"].tolist() == ["pod var restarted var failures var"] * 3


def test_a_message_of_nothing_but_variables_has_no_text():
    corpus = build_corpus(pd.DataFrame({"message": ["12 34.5 10.0.0.1", "disk full"]}))
    assert corpus.per_event()["variant_has_text"].tolist() == [False, True]


@given(
    # Mostly ASCII, the fast path; sometimes with the Kelvin sign or an accent, the regex's path.
    st.text(st.sampled_from("aAbBkK-_. (9"), max_size=30)
    | st.text(st.sampled_from("aAbkK-. \u212aé"), max_size=30),
    st.text(st.sampled_from("aAbBkK-_.9"), min_size=1, max_size=4),
)
@settings(max_examples=2000, derandomize=True, database=None, deadline=None)
def test_the_application_name_is_replaced_as_the_whole_word_regex_would(text, name):
    expected = re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w-])", "app", text, flags=re.I)
    assert replace_name(text, name, "app") == expected


# The framing as one scan of each regex over the whole message: what strip_framing and extract_hint
# do line by line must equal it. The scope's regex as Python's `re` ran it, which RE2 now runs.
_TEAM_SECTION = re.compile(r"\A.*?message for the user[^\n]*(?:\n|\Z)", re.I | re.S)
_HINT = re.compile(r"^[^\n]{0,6}?hint:[ \t]*(.*)\Z", re.I | re.M | re.S)
_SCOPE_NAME = re.compile(r"scope:[^'\n]*'([^'\n]+)'(?:\s+with id\s+'([^'\n]+)')?", re.I)


def strip_framing_in_whole_scans(message: str) -> str:
    scope = _SCOPE_NAME.search(message)
    text = _TEAM_SECTION.sub("", message, count=1)
    text = cleaning._NEED_HELP_LINE.sub("", text)
    text = cleaning._SECTION_LABEL.sub("", text)
    text = cleaning._RULE_LINE.sub(" ", text)
    if scope:
        for value, word in zip(scope.groups(), ("app", "id"), strict=True):
            if value:
                text = replace_name(text, value, word)
    return text.strip()


def extract_hint_in_one_scan(message: str) -> str:
    found = _HINT.search(message)
    return found.group(1).strip() if found else ""


_FRAMING_PIECES = [
    "MESSAGE FOR THE USER", "message for the user", "meſſage for the uſer", "MESSAGE FOR QOVERY TEAM:",
    " * Scope: Build platform 'beta-build' with id 'ze9e19029'", "Scope: 'a'", " with id ", "'b'",
    "Need help: see", "NEED HELP:", "need help", " \u2709\ufe0f Error message: ", "error message:",
    "\u2139\ufe0f Hint: ", "hint:", "HİNT:", "hınt:", "Hint:\t", "-----", "------------", "----",
    "beta-build", "ze9e19029", "app", "\n", "\n\n", " ", "\t", "\r", "\u2028", "\x85", "\u274c", "x", "é",
]  # fmt: skip


@given(st.lists(st.sampled_from(_FRAMING_PIECES) | st.text(max_size=3), max_size=16).map("".join))
@settings(max_examples=3000, derandomize=True, database=None, deadline=None)
def test_the_framing_taken_apart_line_by_line_equals_whole_scans_of_its_regexes(message):
    assert strip_framing(message) == strip_framing_in_whole_scans(message)
    assert extract_hint(message) == extract_hint_in_one_scan(message)
    assert user_text_and_hint(message) == (strip_framing(message), extract_hint(message))


def test_a_label_followed_by_nothing_takes_the_next_lines_whitespace_as_in_one_scan():
    for message in ["Hint:\n  \n  check the port", "x\n Error message: \t\nfailed\nHint:", FRAMED]:
        assert strip_framing(message) == strip_framing_in_whole_scans(message)
        assert extract_hint(message) == extract_hint_in_one_scan(message)


# The variable parts' rules as Python's `re` ran them all, without prefilters: on any text, the
# masking (two rules now on RE2, each rule skipped where the text lacks what it needs) must equal it.
_TIME = r"\b\d{4}-\d{2}-\d{2}(?:[t ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:z|[+-]\d{2}:?\d{2})?)?\b"
_TLDS = "com|net|org|io|dev|app|co|cloud|sh|ai|eu|fr|de|uk|us|internal|local|svc"
_UNITS = r"[kmgtp]i?b?|bytes?|[mun]?s|secs?|seconds?|mins?|minutes?|h|hours?"
_MASKS_AS_RE_RAN_THEM = [
    ("url", re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"()<>]+", re.I)),
    ("id", re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?:-\d+)*\b", re.I)),
    ("time", re.compile(_TIME, re.I)),
    ("path", re.compile(r"(?<![\w/.])(?:~|\.{1,2})?(?:/[\w.@+-]+)+/?")),
    ("host", re.compile(rf"\b(?:[a-z0-9-]+\.)+(?:{_TLDS})\b", re.I)),
    ("quantity", re.compile(rf"\b\d+(?:\.\d+)?(?:%|\s?(?:{_UNITS})\b)", re.I)),
    ("hash", re.compile(r"\b(?:0x[0-9a-f]+|(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,})\b", re.I)),
    ("id", re.compile(r"\b(?=[a-z_]*\d)(?=\d*[a-z])[a-z0-9_]{5,}\b", re.I)),
]
_REDACTED_AS_IT_WAS = re.compile("<(" + "|".join(sorted(cleaning.SECRET_KINDS)) + ")>")


def masked_as_re_did(text: str, placeholder: str | None) -> str:
    words = {"ip_address": " ip ", "email": " email "}
    text = _REDACTED_AS_IT_WAS.sub(lambda m: placeholder or words.get(m.group(1), " secret "), text)
    text = text.replace("<*>", placeholder or " var ")
    for word, pattern in _MASKS_AS_RE_RAN_THEM:
        text = pattern.sub(placeholder or f" {word} ", text)
    return text


_RULE_PIECES = [
    "a", "B", "x", "f", "-", "_", ".", "com", "co", "io", "ıo", "İO", "ſh", "uK", "http", "://", "/", ":",
    " ", "\t", "\x0b", "\x1c", "\x85", "\u3000", "\u2028", "é", "ſ", "ı", "İ", "\u212a", "\ud83d", "9",
    "٣", "'", '"', "(", "<", ">", "+", "\n", "ª", "\u0345", "\U0002ebf0", "a.b.com", "x-a.io", "s3://b",
    "~", "..", "0x1f", "3f9a1c2e7b", "512Mi", "30 s", "95%", "2024-05-01T10:00:00Z", "12:30",
    "0548486d-0605-4b64-8049-24954ceec8e0", "abcdefab-abcd-abcd-abcd-abcdefabcdef", "-13", "web-x2x9q",
    "<ip_address>", "<email>", "<jwt>", "<*>",
]  # fmt: skip


@given(
    st.lists(st.sampled_from(_RULE_PIECES) | st.text(max_size=2), max_size=14).map("".join),
    st.sampled_from([None, "<*>"]),
)
@settings(max_examples=3000, derandomize=True, database=None, deadline=None)
def test_the_masking_masks_what_pythons_re_masked_with_every_rule(text, placeholder):
    assert mask_variable_parts(text, placeholder) == masked_as_re_did(text, placeholder)


_SCOPE_PIECES = [
    "scope:", "SCOPE:", "ſcope:", "'", "a", "'b'", " with id ", " wıth İd ", "\n", " ", "\x85", "\u2028",
    "x", "''", "\t", "\ud83d", "scope:scope:", "'a'\n",
]  # fmt: skip


@given(st.lists(st.sampled_from(_SCOPE_PIECES) | st.text(max_size=2), max_size=10).map("".join))
@settings(max_examples=1500, derandomize=True, database=None, deadline=None)
def test_the_scope_names_found_in_code_are_those_the_regex_found(text):
    expected = _SCOPE_NAME.search(text)
    assert cleaning.scope_names(text) == (expected.groups() if expected else None)


def test_re2s_whitespace_is_pythons():
    spelled = re2.compile(f"[{cleaning._RE2_SPACE}]")
    assert [c for c in range(0x110000) if spelled.fullmatch(chr(c).encode("utf-8", "surrogatepass"))] == [
        c for c in range(0x110000) if chr(c).isspace()
    ]


def test_a_name_longer_than_a_dns_name_is_left_in_the_text():
    name = "a" * 254
    message = FRAMED.replace("'beta-build'", f"'{name}'").replace("image beta-build", f"image {name}")
    assert name in strip_framing(message)
    assert "image app " in strip_framing(message.replace(name, name[:253]))


# Platform profiles ------------------------------------------------------------------------------


def test_the_generic_profile_keeps_qoverys_framing_as_text_and_gives_no_hint():
    assert PROFILES["generic"].user_text_and_hint(FRAMED) == (FRAMED.strip(), "")
    generic = set(clean_messages(series(FRAMED), profile="generic")[0].split())
    qovery = set(clean_messages(series(FRAMED))[0].split())
    # The team's section, the "Need help" line and the labels are words like others: another
    # platform's message that says "message for the user" or "hint:" means it.
    assert {"message", "user", "need", "help", "hint", "beta", "rollback"} <= generic
    assert qovery.isdisjoint({"message", "user", "need", "help", "hint", "beta", "rollback"})


def test_the_generic_profile_still_masks_the_variable_parts():
    message = "GET https://api.acme.io/v1 failed after 30s at 2026-11-20T10:00:00Z on /var/run/app.sock"
    assert clean_messages(series(message), profile="generic").tolist() == [
        "get url failed quantity time path"
    ]


def test_under_the_generic_profile_a_hint_line_is_text_and_no_clusters_merge_by_it():
    messages = pd.DataFrame(
        {"message": ["build failed\nhint: add a Dockerfile", "image pull failed\nhint: add a Dockerfile"]}
    )
    qovery, generic = build_corpus(messages), build_corpus(messages, profile="generic")
    assert qovery.hints["hint"].tolist() == ["add a Dockerfile"]
    assert generic.hints["hint"].tolist() == [""]
    assert generic.variants["cleaned"].tolist() == [
        "build failed hint add dockerfile",
        "image pull failed hint add dockerfile",
    ]
    # Each text its own DBSCAN cluster: the shared hint merges them under qovery, not under generic.
    labels = np.array([0, 1])
    for corpus, clusters in ((qovery, [0, 0]), (generic, [0, 1])):
        vectors = DocumentVectors(
            texts=corpus.variants["cleaned"].tolist(), counts=np.array([1, 1]), vectors=np.eye(2)
        )
        assert sorted(label_events(corpus, vectors, labels, merge_by_hint=True)["cluster_id"]) == clusters


def test_the_generic_profile_leaves_the_scope_lines_application_name():
    message = "Scope: Build platform 'beta-build' with id 'ze9e19029'\nbeta-build image failed"
    assert "app" in strip_framing(message).split()
    assert PROFILES["generic"].user_text_and_hint(message)[0] == message
