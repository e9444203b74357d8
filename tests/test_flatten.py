"""Flattening batches: error events one per row; every unreadable record quarantined with a reason."""

import json

import pandas as pd
import pytest

from faultline.flatten import flatten_batches

DAY = pd.Timestamp("2026-11-20T10:00:00Z")


def event(state: str = "DEPLOYMENT_ERROR", message: str = "build failed", **extra) -> dict:
    return {"scope": "ENVIRONMENT", "state": state, "message": message, **extra}


def dump(*payloads) -> pd.DataFrame:
    return pd.DataFrame(
        {"id": range(1, len(payloads) + 1), "created_at": [DAY] * len(payloads), "payload": list(payloads)}
    )


def test_batches_explode_into_one_row_per_error_event():
    flattened = flatten_batches(
        dump(
            json.dumps([event(message="a"), event("DEPLOYED", "ok"), event("BUILD_ERROR", "b")]),
            json.dumps([event(message="c")]),
        )
    )
    events = flattened.events
    assert events["message"].tolist() == ["a", "b", "c"]
    assert events[["row_id", "event_index"]].values.tolist() == [[1, 0], [1, 2], [2, 0]]
    assert flattened.n_events_read == 4
    assert flattened.n_non_error_events == 1
    assert flattened.non_error_states == {"DEPLOYED": 1}
    assert flattened.quarantine.empty


def test_which_states_count_as_errors_is_a_parameter():
    flattened = flatten_batches(
        dump(json.dumps([event("BUILD_ERROR"), event("STOPPED")])), error_states=["STOPPED"]
    )
    assert flattened.events["state"].tolist() == ["STOPPED"]


def test_fields_beyond_the_contract_are_kept_in_extra():
    flattened = flatten_batches(dump(json.dumps([event(root_cause="oom", execution_id="x-1")])))
    assert json.loads(flattened.events.loc[0, "extra"]) == {"root_cause": "oom", "execution_id": "x-1"}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("{not json", "payload_not_json"),
        ('{"scope": "ENVIRONMENT"}', "payload_not_a_list"),
        (b"[\xff\xfe]", "payload_not_utf8"),
        (None, "payload_missing"),
        (12, "payload_not_text"),
        # More digits than Python reads into an int: json.loads raises a plain ValueError.
        ("[" + "1" * 5000 + "]", "payload_not_json"),
    ],
)
def test_unreadable_payloads_are_quarantined_with_their_row_id(payload, reason):
    flattened = flatten_batches(dump(json.dumps([event()]), payload))
    assert len(flattened.events) == 1
    assert flattened.quarantine[["row_id", "reason"]].values.tolist() == [[2, reason]]
    assert flattened.quarantine["event_index"].isna().all()


@pytest.mark.parametrize(
    ("bad_event", "reason"),
    [
        ({"scope": "ENVIRONMENT", "state": "DEPLOYMENT_ERROR"}, "event_missing_field"),
        ({"scope": "ENVIRONMENT", "state": "DEPLOYMENT_ERROR", "message": None}, "event_missing_field"),
        ({"state": "DEPLOYMENT_ERROR", "message": "x"}, "event_missing_field"),
        ({"scope": "ENVIRONMENT", "state": "DEPLOYMENT_ERROR", "message": 42}, "event_field_not_text"),
        ("just a string", "event_not_an_object"),
    ],
)
def test_unreadable_events_are_quarantined_and_their_batch_mates_kept(bad_event, reason):
    flattened = flatten_batches(dump(json.dumps([event(message="kept"), bad_event])))
    assert flattened.events["message"].tolist() == ["kept"]
    assert flattened.quarantine[["row_id", "event_index", "reason"]].values.tolist() == [[1, 1, reason]]


def test_a_one_megabyte_message_is_quarantined_not_analysed():
    huge = "E" * 1_048_576
    flattened = flatten_batches(dump(json.dumps([event(message=huge), event(message="small")])))
    assert flattened.events["message"].tolist() == ["small"]
    row = flattened.quarantine.iloc[0]
    assert row["reason"] == "message_too_long"
    assert "1048576 characters" in row["detail"]
    assert len(row["excerpt"]) == 200


def test_every_event_read_is_kept_counted_or_quarantined():
    flattened = flatten_batches(
        dump(
            json.dumps([event(), event("DEPLOYED"), {"state": "X"}, 3]),
            "oops",
            json.dumps([event(), event("BUILDING")]),
        )
    )
    accounted = (
        len(flattened.events)
        + flattened.n_non_error_events
        + flattened.quarantine["event_index"].notna().sum()
    )
    assert accounted == flattened.n_events_read == 6
    assert flattened.quarantine["event_index"].isna().sum() == 1


def test_an_empty_day_flattens_to_empty_frames():
    flattened = flatten_batches(dump())
    assert flattened.events.empty and flattened.quarantine.empty
    assert list(flattened.events.columns) == [
        "row_id",
        "event_index",
        "created_at",
        "scope",
        "state",
        "message",
        "extra",
    ]


def test_secrets_in_messages_are_redacted_when_flattened():
    message = (
        "clone https://oauth2:ghp_abcdefghijklmnopqrstuvwxyz0123456789@github.com/a/b.git as bob@example.com"
    )
    flattened = flatten_batches(dump(json.dumps([event(message=message, token="password=hunter2")])))
    assert (
        flattened.events.loc[0, "message"] == "clone https://<url_credentials>@github.com/a/b.git as <email>"
    )
    assert "hunter2" not in flattened.events.loc[0, "extra"]


def test_secrets_never_reach_the_quarantine_excerpt():
    flattened = flatten_batches(dump('{"password": "hunter2", broken'))
    assert "hunter2" not in flattened.quarantine.loc[0, "excerpt"]


def test_a_secret_straddling_the_excerpt_cut_is_still_redacted():
    # The 200-character excerpt ends inside the password; its "@" lies beyond the cut.
    prefix = "x" * (200 - len("clone https://admin:S3cr"))
    flattened = flatten_batches(dump(prefix + "clone https://admin:S3cretPassw0rd@db.internal/app {broken"))
    assert flattened.quarantine.loc[0, "reason"] == "payload_not_json"
    assert "S3cr" not in flattened.quarantine.loc[0, "excerpt"]
