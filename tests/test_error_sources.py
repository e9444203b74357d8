"""The error side's source and record format from the deployment's variables (FAULTLINE_ERROR_*)."""

import pytest

from assets.settings import Settings
from resources.dagster_failures import DAGSTER_FAILURE_SHAPE, DagsterFailures
from resources.error_sources import error_event_format, error_event_source
from resources.event_files import EventFiles
from resources.event_store import DeploymentEventStore


def settings(**environ: str) -> Settings:
    return Settings.from_env(environ)


def test_by_default_the_source_is_qoverys_batched_table_cleaned_by_qoverys_rules():
    given = settings()
    source, error_format = error_event_source(given), error_event_format(given)
    assert isinstance(source, DeploymentEventStore)
    assert (source.table, source.payload_column, source.event_columns) == ("deployment_events", "payload", [])
    assert error_format.shape().layout == "batched"
    assert error_format.shape().error_states == (
        "BUILD_ERROR",
        "DEPLOYMENT_ERROR",
        "DELETE_ERROR",
        "STOP_ERROR",
        "RESTART_ERROR",
    )
    assert error_format.profile == "qovery"


def test_a_table_of_one_event_per_row_in_columns_is_read_as_such_with_generic_rules():
    given = settings(
        FAULTLINE_ERROR_TABLE="ops.deploy_failures",
        FAULTLINE_ERROR_ID_COLUMN="failure_id",
        FAULTLINE_ERROR_TIME_COLUMN="failed_at",
        FAULTLINE_ERROR_EVENT_COLUMNS="service, error_text,level",
        FAULTLINE_ERROR_MESSAGE_FIELD="error_text",
        FAULTLINE_ERROR_STATE_FIELD="level",
        FAULTLINE_ERROR_STATES="ERROR,FATAL",
    )
    source, shape = error_event_source(given), error_event_format(given).shape()
    assert (source.table, source.id_column, source.created_at_column) == (
        "ops.deploy_failures",
        "failure_id",
        "failed_at",
    )
    assert source.event_columns == ["service", "error_text", "level"]
    assert (shape.layout, shape.message_field, shape.state_field, shape.scope_field) == (
        "event",
        "error_text",
        "level",
        None,
    )
    assert shape.error_states == ("ERROR", "FATAL")
    assert error_event_format(given).profile == "generic"


def test_files_are_one_event_per_line_every_one_an_error_unless_states_are_listed():
    given = settings(
        FAULTLINE_ERROR_SOURCE="files",
        FAULTLINE_ERROR_FILES="/srv/ci/{date}/*.jsonl.gz",
        FAULTLINE_ERROR_MESSAGE_FIELD="log.tail",
    )
    source, shape = error_event_source(given), error_event_format(given).shape()
    assert isinstance(source, EventFiles)
    assert (shape.layout, shape.message_field, shape.error_states) == ("event", "log.tail", None)
    listed = error_event_format(
        settings(
            FAULTLINE_ERROR_SOURCE="files",
            FAULTLINE_ERROR_FILES="s3://bucket/ci/",
            FAULTLINE_ERROR_TIME_FIELD="finished_at",
            FAULTLINE_ERROR_STATE_FIELD="conclusion",
            FAULTLINE_ERROR_STATES="failure",
        )
    ).shape()
    assert (listed.state_field, listed.error_states) == ("conclusion", ("failure",))
    assert (
        error_event_source(
            settings(
                FAULTLINE_ERROR_SOURCE="files", FAULTLINE_ERROR_FILES="x/", FAULTLINE_ERROR_TIME_FIELD="t"
            )
        ).time_field
        == "t"
    )


def test_the_dagster_source_reads_this_deployments_failures_in_their_own_shape():
    given = settings(FAULTLINE_ERROR_SOURCE="dagster")
    assert isinstance(error_event_source(given), DagsterFailures)
    assert error_event_format(given).shape() == DAGSTER_FAILURE_SHAPE
    assert error_event_format(given).profile == "generic"


def test_a_star_makes_every_event_an_error():
    assert error_event_format(settings(FAULTLINE_ERROR_STATES="*")).shape().error_states is None


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"FAULTLINE_ERROR_SOURCE": "kafka"}, "FAULTLINE_ERROR_SOURCE='kafka'"),
        ({"FAULTLINE_ERROR_SOURCE": "files"}, "needs FAULTLINE_ERROR_FILES"),
    ],
)
def test_a_wrong_source_fails_naming_the_variable(environ, named):
    with pytest.raises(ValueError, match=named):
        settings(**environ)


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"FAULTLINE_ERROR_LAYOUT": "csv"}, "FAULTLINE_ERROR_LAYOUT='csv'"),
        ({"FAULTLINE_ERROR_PROFILE": "gitlab"}, "FAULTLINE_ERROR_PROFILE"),
        ({"FAULTLINE_ERROR_MESSAGE_FIELD": "log..tail"}, "message_field"),
    ],
)
def test_a_wrong_format_fails_naming_the_setting(environ, named):
    with pytest.raises(ValueError, match=named):
        error_event_format(settings(**environ))
