"""Error events in other shapes: one JSON object per row, fields at dotted paths, states by configuration."""

import json
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from assets.error_clusters import CleaningConfig, FlattenConfig, event_shape
from faultline.event_shape import EventShape, shape_from_config
from faultline.flatten import EVENT_COLUMNS, flatten_batches
from faultline.pipeline import clean_corpus, flatten_dump, write_parts
from resources.error_sources import ErrorEventFormat
from resources.frame_parts import PartWriter

DAY = pd.Timestamp("2026-11-20T10:00:00Z")
# Log lines as a JSON-lines file or a table's JSON column holds them: one event per row, nested.
NESTED = shape_from_config(
    layout="event",
    message_field="log.text",
    state_field="level",
    scope_field="service.name",
    error_states=["ERROR", "500"],
)


def line(text: object = "disk full", level: object = "ERROR", service: object = "api", **extra) -> dict:
    return {
        "ts": "2026-11-20T10:00:00Z",
        "level": level,
        "log": {"text": text},
        "service": {"name": service},
        **extra,
    }


def dump(*payloads) -> pd.DataFrame:
    payloads = [p if isinstance(p, str | bytes) or p is None else json.dumps(p) for p in payloads]
    return pd.DataFrame(
        {"id": range(1, len(payloads) + 1), "created_at": [DAY] * len(payloads), "payload": payloads}
    )


def test_a_row_is_one_event_read_at_its_nested_paths():
    flattened = flatten_batches(dump(line("disk full"), line("probe failed", service="web")), shape=NESTED)
    events = flattened.events
    assert events[["row_id", "event_index", "scope", "state", "message"]].values.tolist() == [
        [1, 0, "api", "ERROR", "disk full"],
        [2, 0, "web", "ERROR", "probe failed"],
    ]
    assert (flattened.n_rows, flattened.n_events_read, flattened.n_quarantined) == (2, 2, 0)


def test_extra_keeps_every_field_the_shape_did_not_read():
    event = line("disk full", execution="x-1")
    event["log"]["file"] = "/var/log/app.log"
    flattened = flatten_batches(dump(event), shape=NESTED)
    # log.text and service.name were read: `log` keeps its file, `service` is left empty and goes.
    assert json.loads(flattened.events.loc[0, "extra"]) == {
        "ts": "2026-11-20T10:00:00Z",
        "log": {"file": "/var/log/app.log"},
        "execution": "x-1",
    }


def test_a_key_holding_the_dots_itself_is_read_and_left_out_of_extra():
    shape = shape_from_config(layout="event", message_field="error.message", scope_field=None)
    flattened = flatten_batches(
        dump({"error.message": "oom killed", "state": "BUILD_ERROR", "error": {"code": 137}}), shape=shape
    )
    assert flattened.events.loc[0, "message"] == "oom killed"
    assert json.loads(flattened.events.loc[0, "extra"]) == {"error": {"code": 137}}


def test_the_states_filter_keeps_errors_and_counts_the_rest_a_number_by_its_json_text():
    flattened = flatten_batches(
        dump(line(level="ERROR"), line(level="INFO"), line(level=500), line(level=404), line(level=True)),
        shape=NESTED,
    )
    assert flattened.events["state"].tolist() == ["ERROR", "500"]
    assert flattened.non_error_states == {"INFO": 1, "404": 1, "true": 1}
    assert flattened.n_non_error_events == 3


def test_every_event_is_an_error_when_the_config_says_so():
    shape = shape_from_config(
        layout="event",
        message_field="log.text",
        state_field=None,
        scope_field=None,
        every_event_is_error=True,
    )
    flattened = flatten_batches(
        dump(line("a", level="INFO"), line("b", level="DEBUG"), {"log": {"text": "c"}}), shape=shape
    )
    assert flattened.events["message"].tolist() == ["a", "b", "c"]
    assert flattened.events["state"].tolist() == flattened.events["scope"].tolist() == ["", "", ""]
    assert flattened.n_non_error_events == 0
    # With no state field, `level` was not read: it stays in extra.
    assert json.loads(flattened.events.loc[0, "extra"])["level"] == "INFO"


def test_rows_that_are_no_object_are_quarantined_whole_and_counted():
    flattened = flatten_batches(
        dump(line("kept"), [line("in an array")], '"a string"', "12", "null", "{broken"), shape=NESTED
    )
    assert flattened.events["message"].tolist() == ["kept"]
    assert flattened.quarantined == {"payload_not_an_object": 4, "payload_not_json": 1}
    assert flattened.n_rows_quarantined == 5 and flattened.n_events_read == 1
    quarantine = flattened.quarantine
    assert quarantine["row_id"].tolist() == [2, 3, 4, 5, 6] and quarantine["event_index"].isna().all()
    assert quarantine.loc[0, "detail"] == "payload is a JSON list, expected an object (one event per row)"


@pytest.mark.parametrize(
    ("event", "reason", "detail"),
    [
        ({"level": "ERROR", "service": {"name": "api"}}, "event_missing_field", "missing log.text"),
        (line(None), "event_missing_field", "missing log.text"),
        (line(42), "event_field_not_text", "log.text is a JSON int, expected a string"),
        (line(service=None), "event_missing_field", "missing service.name"),
        (
            line(level=["ERROR"]),
            "event_field_not_text",
            "level is a JSON list, expected a string, number or boolean",
        ),
    ],
)
def test_an_event_whose_fields_cannot_be_read_is_quarantined_naming_the_configured_path(
    event, reason, detail
):
    flattened = flatten_batches(dump(line("kept"), event), shape=NESTED)
    assert flattened.events["message"].tolist() == ["kept"]
    assert flattened.quarantine[["row_id", "event_index", "reason", "detail"]].values.tolist() == [
        [2, 0, reason, detail]
    ]


def test_secrets_are_redacted_in_message_scope_state_extra_and_excerpts_of_the_event_layout():
    shape = shape_from_config(
        layout="event", message_field="log.text", state_field="level", scope_field="service.name",
        every_event_is_error=True,
    )  # fmt: skip
    event = line(
        "clone https://oauth2:ghp_abcdefghijklmnopqrstuvwxyz0123456789@github.com/a/b.git",
        level="token=Quokka-Passw0rd!",
        service="ops quokka.ops@acme-corp.io",
        auth={"password": "hunter2hunter2"},
    )
    flattened = flatten_batches(
        dump(event, [{"password": "hunter2hunter2"}], line(7, note="password=hunter2hunter2")), shape=shape
    )
    written = flattened.events.astype(str).to_csv() + flattened.quarantine.astype(str).to_csv()
    for secret in (
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "Quokka-Passw0rd!",
        "quokka.ops@acme-corp.io",
        "hunter2",
    ):
        assert secret not in written
    assert flattened.events.loc[0, "message"] == "clone https://<url_credentials>@github.com/a/b.git"
    assert flattened.events.loc[0, "scope"] == "ops <email>"
    assert set(flattened.quarantine["reason"]) == {"payload_not_an_object", "event_field_not_text"}


def test_a_message_longer_than_its_bound_is_quarantined_in_the_event_layout_too():
    flattened = flatten_batches(dump(line("E" * 5000), line("small")), max_message_chars=1000, shape=NESTED)
    assert flattened.events["message"].tolist() == ["small"]
    assert flattened.quarantined == {"message_too_long": 1}
    assert len(flattened.quarantine.loc[0, "excerpt"]) == 200


def test_the_default_shape_is_qoverys_batches():
    assert shape_from_config() == EventShape()
    # The step's Config defers to the deployment's format, whose defaults are Qovery's.
    assert event_shape(FlattenConfig(), ErrorEventFormat()) == EventShape()


def test_the_steps_config_overrides_the_deployments_format_field_by_field():
    every_event = ErrorEventFormat(
        layout="event", message_field="text", state_field="kind", scope_field="job", error_states=None
    )
    assert event_shape(FlattenConfig(), every_event) == EventShape(
        layout="event", message_field="text", state_field="kind", scope_field="job", error_states=None
    )
    # Listing states in the Config makes them tell the errors, even where the deployment takes every event.
    listed = event_shape(FlattenConfig(message_field="log.tail", error_states=["failure"]), every_event)
    assert (listed.message_field, listed.state_field, listed.error_states) == (
        "log.tail",
        "kind",
        ("failure",),
    )
    # An empty state field needs every event an error: the deployment's says so here, Qovery's does not.
    assert event_shape(FlattenConfig(state_field=""), every_event).state_field is None
    with pytest.raises(ValueError, match="set every_event_is_error=true"):
        event_shape(FlattenConfig(state_field=""), ErrorEventFormat())


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"layout": "rows"}, "layout='rows'"),
        ({"message_field": "log..text"}, "message_field='log..text'"),
        ({"state_field": "", "every_event_is_error": False}, "set every_event_is_error=true"),
        ({"error_states": []}, "error_states is empty"),
    ],
)
def test_a_config_that_cannot_describe_a_shape_is_refused_naming_the_setting(settings, named):
    with pytest.raises(ValidationError, match=named):
        FlattenConfig(**settings)


def test_a_config_with_no_state_field_and_every_event_an_error_is_accepted():
    config = FlattenConfig(layout="event", state_field="", scope_field="", every_event_is_error=True)
    assert config.every_event_is_error


def test_an_unknown_cleaning_profile_is_refused_naming_the_setting_and_the_choices():
    with pytest.raises(ValidationError, match="profile='datadog': use one of generic, qovery"):
        CleaningConfig(profile="datadog")


def test_the_shape_and_the_profile_reach_the_worker_processes(tmp_path: Path):
    framed = "failed\nNeed help: ask support\nHint: add a Dockerfile"
    rows = dump(*[line(f"build {n} {framed}") for n in range(4)])
    parts = write_parts(rows, tmp_path / "dump", rows_per_part=2)
    (tmp_path / "events").mkdir()
    writer = PartWriter(tmp_path / "events", EVENT_COLUMNS)
    flattened = flatten_dump(
        parts, writer, ["ERROR"], workers=2, layout="event", message_field="log.text", state_field="level",
        scope_field="service.name",
    )  # fmt: skip
    events = writer.commit()
    assert (flattened.n_events_read, events.n_rows) == (4, 4)
    generic = clean_corpus(events, workers=2, profile="generic")
    qovery = clean_corpus(events, workers=2)
    assert generic.hints["hint"].tolist() == [""]
    assert "need help" in generic.variants.loc[0, "error_text"].lower()
    assert qovery.hints["hint"].tolist() == ["add a Dockerfile"]
    assert "need help" not in qovery.variants.loc[0, "error_text"].lower()
