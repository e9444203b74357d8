"""The demo deployment-events store: exact root-cause shares, the engine's framing, batches and secrets."""

import json
import re
import string
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import pytest

from faultline.demo_data.deployment_events import (
    ROOT_CAUSES,
    RootCause,
    frame_message,
    generate_deployment_batches,
)

END = datetime(2024, 6, 3, tzinfo=UTC)  # a Monday: the 14 days before it hold two weekends
N_ERRORS = 20_000
CAUSES = {cause.name: cause for cause in ROOT_CAUSES}

# The two error messages of the seed (Qovery's write-up), as its JSON shows them.
SEED_BUILDER_UNDETERMINED = json.loads(
    r""""\n-------------------------------------------------------------------------------\n\n MESSAGE """
    r"""FOR QOVERY TEAM:\n * Execution ID: 0548486d-0605-4b64-8049-24954ceec8e0-13-1625428767\n * """
    r"""Scope: Build platform 'beta-build' with id 'ze9e19029'\n * Rollback message: """
    r"""\n\n-------------------------------------------------------------------------------\n\n \u274c """
    r"""\u274c \u274c MESSAGE FOR THE USER \u274c \u274c \u274c\n\n \u2709\ufe0f Error message: Qovery """
    r"""can't build your container image beta-build (ze9e19029) with one of the following builders: """
    r"""heroku/buildpacks:20. Please do provide a valid Dockerfile to build your application or contact """
    r"""the support.\n \ud83d\udcac Need help: Look at the hint message first. If you need more """
    r"""assistance, you can reach the support team on Discord (https://discord.qovery.com) or on the """
    r"""Qovery console (https://console.qovery.com) with the integrated chat.\n \u2139\ufe0f Hint: None """
    r'''builders supports Your application can't be built without providing a Dockerfile\n "'''
)
SEED_DOCKERFILE_ERROR = json.loads(
    r""""\n-------------------------------------------------------------------------------\n\n MESSAGE """
    r"""FOR QOVERY TEAM:\n * Execution ID: d5ab51f0-94d3-4671-8dc6-77fc228f2e35-6-1627037439\n * Scope: """
    r"""Build platform 'beta-build' with id 'ze9e19029'\n * Rollback message: """
    r"""\n\n-------------------------------------------------------------------------------\n\n \u274c """
    r"""\u274c \u274c MESSAGE FOR THE USER \u274c \u274c \u274c\n\n \u2709\ufe0f Error message: error """
    r"""while building container image beta-build (ze9e19029). Error: SimpleError { kind: """
    r"""Command(ExitStatus(ExitStatus(256))), message: Some(\"error while executing an internal """
    r"""command\") }\n \ud83d\udcac Need help: Look at the hint message first. If you need more """
    r"""assistance, you can reach the support team on Discord (https://discord.qovery.com) or on the """
    r"""Qovery console (https://console.qovery.com) with the integrated chat.\n \u2139\ufe0f Hint: It """
    r"""looks like there is something wrong in your Dockerfile. Try run locally using `qovery run` or """
    r'''build with `docker build --no-cache`\n "'''
)

FRAMING = re.compile(
    r"\n-{79}\n\n MESSAGE FOR QOVERY TEAM:\n"
    r" \* Execution ID: (?P<execution_id>"
    r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}-\d+-\d{10})\n"
    r" \* Scope: (?P<target>Build platform|Application|Database)"
    r" '(?P<app>[a-z-]+)' with id '(?P<zid>z[0-9a-f]{8})'\n"
    r" \* Rollback message: \n\n-{79}\n\n"
    " \u274c \u274c \u274c MESSAGE FOR THE USER \u274c \u274c \u274c\n\n"
    " \u2709\ufe0f Error message: (?P<error>[^\n]+)\n"
    " \U0001f4ac Need help: Look at the hint message first. If you need more assistance, you can reach the"
    r" support team on Discord \(https://discord\.qovery\.com\) or on the Qovery console"
    r" \(https://console\.qovery\.com\) with the integrated chat\.\n"
    " \u2139\ufe0f Hint: (?P<hint>[^\n]+)\n $"
)


def events_of(rows: list[dict]) -> list[dict]:
    return [event for row in rows for event in json.loads(row["payload"])]


def variant_pattern(template: str) -> re.Pattern:
    """A template as a regex: its literal text, anything in place of each placeholder."""
    parts = [
        re.escape(literal) + ("" if field is None else ".*?")
        for literal, field, _, _ in string.Formatter().parse(template)
    ]
    return re.compile("".join(parts), re.DOTALL)


def matching_variants(cause: RootCause, error_message: str) -> set[int]:
    return {
        i for i, template in enumerate(cause.variants) if variant_pattern(template).fullmatch(error_message)
    }


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return generate_deployment_batches(END, days=14, n_error_events=N_ERRORS, seed=7)


@pytest.fixture(scope="module")
def events(rows: list[dict]) -> list[dict]:
    return events_of(rows)


@pytest.fixture(scope="module")
def errors(events: list[dict]) -> list[dict]:
    return [event for event in events if event["root_cause"] is not None]


@pytest.fixture(scope="module")
def framed(errors: list[dict]) -> list[tuple[dict, re.Match]]:
    return [(event, FRAMING.match(event["message"])) for event in errors]


def test_root_causes_are_distinct_with_shares_summing_to_one_and_3_to_5_variants() -> None:
    assert len(CAUSES) == len(ROOT_CAUSES) == 16
    assert sum(cause.share for cause in ROOT_CAUSES) == pytest.approx(1.0)
    for cause in ROOT_CAUSES:
        assert 3 <= len(cause.variants) <= 5, cause.name
        assert 1 <= len(cause.hints) <= 2, cause.name
    assert CAUSES["buildpack_builder_undetermined"].share == 0.170
    assert CAUSES["kubernetes_probe_failed"].share == 0.165


def test_each_root_cause_gets_exactly_its_share_of_the_error_events(errors: list[dict]) -> None:
    counts = Counter(event["root_cause"] for event in errors)
    assert len(errors) == N_ERRORS
    assert counts == {cause.name: round(cause.share * N_ERRORS) for cause in ROOT_CAUSES}


def test_shares_that_do_not_divide_evenly_still_add_up_to_n_error_events() -> None:
    errors = [
        e for e in events_of(generate_deployment_batches(END, days=3, n_error_events=997)) if e["root_cause"]
    ]
    counts = Counter(event["root_cause"] for event in errors)
    assert len(errors) == 997
    for cause in ROOT_CAUSES:
        assert abs(counts[cause.name] - cause.share * 997) < 1, cause.name


def test_rows_are_numbered_batches_of_1_to_50_events_in_a_json_array(rows: list[dict]) -> None:
    assert [row["id"] for row in rows] == list(range(1, len(rows) + 1))
    sizes = []
    for row in rows:
        assert set(row) == {"id", "created_at", "payload"}
        payload = json.loads(row["payload"])
        assert isinstance(payload, list)
        sizes.append(len(payload))
    assert min(sizes) == 1
    assert max(sizes) == 50
    assert 2 < sum(sizes) / len(sizes) < 20


def test_every_event_has_scope_state_message_execution_id_and_root_cause(events: list[dict]) -> None:
    for event in events:
        assert {"scope", "state", "message", "execution_id", "root_cause"} <= set(event)
        assert event["scope"] in {"ENVIRONMENT", "APPLICATION", "DATABASE"}


def test_created_at_falls_in_the_requested_days_and_every_day_has_rows(rows: list[dict]) -> None:
    start = END - timedelta(days=14)
    for row in rows:
        assert row["created_at"].utcoffset() == timedelta(0)
        assert start <= row["created_at"] < END
    assert [row["created_at"] for row in rows] == sorted(row["created_at"] for row in rows)
    days = {row["created_at"].date() for row in rows}
    assert days == {(start + timedelta(days=d)).date() for d in range(14)}


def test_weekend_days_are_quieter_than_weekdays(rows: list[dict]) -> None:
    per_day = Counter(row["created_at"].date() for row in rows)
    weekend = [n for day, n in per_day.items() if day.weekday() >= 5]
    weekday = [n for day, n in per_day.items() if day.weekday() < 5]
    assert max(weekend) < min(weekday)
    assert len(set(weekday)) == len(weekday)  # some randomness on top of the weekly rhythm


def test_same_arguments_give_identical_rows_and_another_seed_different_ones() -> None:
    first = generate_deployment_batches(END, days=4, n_error_events=500, seed=11)
    assert first == generate_deployment_batches(END, days=4, n_error_events=500, seed=11)
    other = generate_deployment_batches(END, days=4, n_error_events=500, seed=12)
    assert [row["payload"] for row in other] != [row["payload"] for row in first]


def test_non_error_events_share_the_batches_and_have_no_root_cause(
    rows: list[dict], events: list[dict], errors: list[dict]
) -> None:
    others = [event for event in events if event["root_cause"] is None]
    assert len(others) / len(errors) == pytest.approx(1.5, abs=0.1)
    assert {event["state"] for event in others} == {
        "DEPLOYMENT_QUEUED", "BUILDING", "BUILT", "DEPLOYING", "DEPLOYED", "STOPPED",
    }  # fmt: skip
    assert not any(
        event["state"].endswith("_ERROR") or "MESSAGE FOR THE USER" in event["message"] for event in others
    )
    mixed = sum(
        1 for row in rows if len({event["root_cause"] is None for event in json.loads(row["payload"])}) == 2
    )
    assert mixed > len(rows) / 2


def test_error_states_follow_the_stage_that_failed(errors: list[dict]) -> None:
    for event in errors:
        cause = CAUSES[event["root_cause"]]
        assert event["state"] == cause.state in {"BUILD_ERROR", "DEPLOYMENT_ERROR"}
        assert event["scope"] == cause.scope
    assert CAUSES["dockerfile_build_error"].state == "BUILD_ERROR"
    assert CAUSES["kubernetes_probe_failed"].state == "DEPLOYMENT_ERROR"


def test_frame_message_reproduces_the_seed_examples_character_for_character() -> None:
    for seed_message in (SEED_BUILDER_UNDETERMINED, SEED_DOCKERFILE_ERROR):
        parts = FRAMING.match(seed_message)
        assert parts is not None
        scope_line = f"{parts['target']} '{parts['app']}' with id '{parts['zid']}'"
        assert frame_message(parts["execution_id"], scope_line, parts["error"], parts["hint"]) == seed_message


def test_payloads_use_the_seeds_unicode_escapes(rows: list[dict]) -> None:
    payload = next(row["payload"] for row in rows if "_ERROR" in row["payload"])
    for escape in (r"\u274c", r"\u2709\ufe0f", r"\ud83d\udcac", r"\u2139\ufe0f"):
        assert escape in payload


def test_every_error_message_has_the_engine_framing_around_its_cause(
    framed: list[tuple[dict, re.Match]],
) -> None:
    for event, parts in framed:
        assert parts is not None, event["message"]
        cause = CAUSES[event["root_cause"]]
        assert parts["execution_id"] == event["execution_id"]
        assert parts["target"] == cause.target
        assert parts["hint"] in cause.hints


def test_the_seeds_two_example_messages_appear_modulo_ids_and_app(
    framed: list[tuple[dict, re.Match]],
) -> None:
    generated = {event["message"] for event, _ in framed}
    for seed_message in (SEED_BUILDER_UNDETERMINED, SEED_DOCKERFILE_ERROR):
        seed = FRAMING.match(seed_message)
        rewritten = {
            seed_message.replace(seed["execution_id"], parts["execution_id"])
            .replace(seed["app"], parts["app"])
            .replace(seed["zid"], parts["zid"])
            for _, parts in framed
        }
        assert rewritten & generated, seed["error"]


def test_every_variant_of_every_cause_shows_up_and_nothing_else(framed: list[tuple[dict, re.Match]]) -> None:
    seen: dict[str, set[int]] = {cause.name: set() for cause in ROOT_CAUSES}
    for event, parts in framed:
        cause = CAUSES[event["root_cause"]]
        variants = matching_variants(cause, parts["error"])
        assert variants, f"{cause.name}: {parts['error']}"
        seen[cause.name] |= variants
    for cause in ROOT_CAUSES:
        assert seen[cause.name] == set(range(len(cause.variants))), cause.name


def test_variable_parts_vary_and_the_app_name_usually_repeats_in_the_error(
    framed: list[tuple[dict, re.Match]],
) -> None:
    apps = {parts["app"] for _, parts in framed}
    assert 100 <= len(apps) <= 200
    assert len({parts["execution_id"] for _, parts in framed}) == len(framed)
    with_app = sum(1 for _, parts in framed if parts["app"] in parts["error"])
    assert with_app / len(framed) > 0.9


@pytest.mark.parametrize(
    ("cause", "secret", "share", "tolerance"),
    [
        (
            "git_clone_failed",
            r"https://oauth2:ghp_[A-Za-z0-9]{36}@github\.com/[\w-]+/[\w-]+\.git",
            0.20,
            0.07,
        ),
        (
            "database_provisioning_failed",
            r"postgresql://admin:[A-Za-z0-9]{16,24}@[\w.-]+:5432/\w+",
            0.20,
            0.05,
        ),
        ("internal_api_error", r"Authorization: Bearer [\w.-]{40,}", 0.10, 0.05),
    ],
)
def test_secrets_leak_into_the_stated_fraction_of_messages(
    errors: list[dict], cause: str, secret: str, share: float, tolerance: float
) -> None:
    messages = [event["message"] for event in errors if event["root_cause"] == cause]
    leaking = sum(1 for message in messages if re.search(secret, message))
    assert leaking / len(messages) == pytest.approx(share, abs=tolerance)
    others = [event["message"] for event in errors if event["root_cause"] != cause]
    assert not any(re.search(secret, message) for message in others)


@pytest.mark.parametrize(
    "end",
    [
        datetime(2024, 6, 3),
        datetime(2024, 6, 3, 12, tzinfo=UTC),
        datetime(2024, 6, 3, tzinfo=timezone(timedelta(hours=2))),
    ],
)
def test_end_must_be_a_utc_midnight(end: datetime) -> None:
    with pytest.raises(ValueError, match="end="):
        generate_deployment_batches(end, days=2, n_error_events=10)
