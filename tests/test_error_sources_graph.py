"""The error graph end to end on sources users already have, configured as a deployment is
(FAULTLINE_ERROR_* through `Settings.from_env`): a CI system's JSON-lines files, picked by the date in
their names or by a time field, and a table of one event per row in plain columns. (The Dagster
instance's own failures go through the graph in tests/test_dagster_failures_source.py, beside the
failing runs it reads.)"""

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from assets import error_clusters
from assets.settings import Settings
from faultline.clustering import NOISE
from faultline.demo_data.ci_failures import generate_ci_jobs, write_ci_jobs
from resources.error_sources import error_event_format, error_event_source
from resources.part_store import PartStore
from resources.report_store import ReportStore

ASSETS = dg.load_assets_from_modules([error_clusters])
READ_AND_FLATTEN = ["deployment_events_dump", "flattened_events", "event_quarantine"]

# Two days of CI jobs, 160 failed ones: the first day's lines hold 3 broken lines (one of a failed job)
# and a token a log echoes, the second's three tokens.
CI_END = datetime(2026, 11, 22, tzinfo=UTC)
CI_DAYS = ["2026-11-20", "2026-11-21"]
CI_GRAPH_DAY = CI_DAYS[0]  # the day the whole graph runs on; the other is read and flattened only
CI_VARIABLES = {
    "FAULTLINE_ERROR_SOURCE": "files",
    "FAULTLINE_ERROR_MESSAGE_FIELD": "log.tail",
    "FAULTLINE_ERROR_STATE_FIELD": "conclusion",
    "FAULTLINE_ERROR_STATES": "failure",
    "FAULTLINE_ERROR_SCOPE_FIELD": "job.name",
}
TOKEN = re.compile(r"ghp_[a-z]{36}")


def materialize(
    instance: dg.DagsterInstance,
    environment: pytest.MonkeyPatch,
    variables: dict[str, str],
    day: str,
    reports: Path,
    selection: list[str] | None = None,
) -> dg.ExecuteInProcessResult:
    """The graph (or `selection` of it) for `day`, its source and format what a deployment's
    `variables` make. They are set in the environment too: a URL or a folder is read from there (an
    EnvVar) when the resource is set up."""
    for name, value in variables.items():
        environment.setenv(name, value)
    settings = Settings.from_env(variables)
    return dg.materialize(
        ASSETS,
        selection=selection,
        instance=instance,
        partition_key=day,
        resources={
            "event_store": error_event_source(settings),
            "error_format": error_event_format(settings),
            "report_store": ReportStore(directory=str(reports)),
            "part_store": PartStore(),
        },
    )


def metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, object]:
    """The values of the metadata `asset`'s materialization carries."""
    (materialization,) = [
        event.materialization
        for event in result.get_asset_materialization_events()
        if event.asset_key == dg.AssetKey(asset)
    ]
    return {name: value.value for name, value in materialization.metadata.items()}


def parsed(lines: list[str]) -> tuple[list[dict], int]:
    """The lines that read as JSON, and how many did not (a runner killed mid-write)."""
    records, broken = [], 0
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            broken += 1
    return records, broken


def failed_run_ids(records: list[dict]) -> list[str]:
    return sorted(record["run_id"] for record in records if record["conclusion"] == "failure")


def run_ids(events: pd.DataFrame) -> list[str]:
    return sorted(json.loads(extra)["run_id"] for extra in events["extra"])


@pytest.fixture(scope="module")
def ci_jobs(tmp_path_factory) -> tuple[Path, dict[str, list[str]]]:
    """The CI jobs' lines by day, written as a gzip file a day in `<folder>/by_date`, and all of them
    in one file, `<folder>/one_file/jobs.jsonl`."""
    folder = tmp_path_factory.mktemp("ci_jobs")
    lines = generate_ci_jobs(CI_END, days=len(CI_DAYS), n_failures=160)
    write_ci_jobs(folder / "by_date", lines)
    (folder / "one_file").mkdir()
    (folder / "one_file" / "jobs.jsonl").write_text(
        "".join(f"{line}\n" for day in CI_DAYS for line in lines[day])
    )
    return folder, lines


@pytest.fixture(scope="module")
def ci_by_date(ci_jobs) -> Iterator[dict[str, dg.ExecuteInProcessResult]]:
    """Each day read from its own file (`{date}` in the path): the whole graph on CI_GRAPH_DAY, the
    read and flatten steps on the other."""
    folder, _ = ci_jobs
    (folder / "home").mkdir()
    with (
        pytest.MonkeyPatch.context() as environment,
        dg.instance_for_test(temp_dir=str(folder / "home")) as instance,
    ):
        variables = {**CI_VARIABLES, "FAULTLINE_ERROR_FILES": str(folder / "by_date" / "{date}.jsonl.gz")}
        yield {
            day: materialize(
                instance,
                environment,
                variables,
                day,
                folder / "reports",
                None if day == CI_GRAPH_DAY else READ_AND_FLATTEN,
            )
            for day in CI_DAYS
        }


def test_every_failed_ci_job_that_parses_is_one_event_and_broken_lines_are_quarantined(ci_jobs, ci_by_date):
    _, lines = ci_jobs
    for day, result in ci_by_date.items():
        records, broken = parsed(lines[day])
        events = result.asset_value("flattened_events").to_frame()
        # Passed and cancelled jobs are read and counted as events that are not errors.
        assert len(events) == len(failed_run_ids(records)) and run_ids(events) == failed_run_ids(records)
        assert set(events["state"]) == {"failure"}
        assert set(events["scope"]) <= {"test", "build", "lint", "deploy-preview", "integration", "e2e"}
        flattened = metadata(result, "flattened_events")
        assert flattened["rows_read"] == len(lines[day])
        assert flattened["events_read"] == len(records)
        assert flattened["non_error_events"] == len(records) - len(events)
        assert flattened["quarantined"] == broken
        quarantine = result.asset_value("event_quarantine")
        assert quarantine["reason"].tolist() == ["payload_not_json"] * broken
    counts = {
        day: len(result.asset_value("flattened_events").to_frame()) for day, result in ci_by_date.items()
    }
    quarantined = {day: len(result.asset_value("event_quarantine")) for day, result in ci_by_date.items()}
    assert counts == {"2026-11-20": 79, "2026-11-21": 80} and quarantined == {
        "2026-11-20": 3,
        "2026-11-21": 0,
    }


def test_each_group_of_ci_failures_holds_the_failures_of_one_root_cause(ci_jobs, ci_by_date):
    result = ci_by_date[CI_GRAPH_DAY]
    events = result.asset_value("flattened_events").to_frame()
    truth = events.set_index("row_id")["extra"].map(lambda extra: json.loads(extra)["truth"])
    clustered = result.asset_value("error_clusters").events
    clustered = clustered.assign(truth=clustered["row_id"].map(truth))
    in_clusters = clustered[clustered["cluster_id"] >= 0]
    causes_per_cluster = in_clusters.groupby("cluster_id")["truth"].nunique()
    assert (causes_per_cluster == 1).all(), in_clusters.groupby("cluster_id")["truth"].unique()
    # 79 failures of nine causes, each cause's two log shapes apart: 15 groups, and 4 failures whose
    # template no other failure shares are noise (both lint failures, one of each of its shapes).
    report = result.asset_value("error_cluster_report")
    assert report.n_events == len(events) == 79 and report.groups["n_events"].sum() == 79
    assert report.n_clusters == len(causes_per_cluster) == 15
    assert clustered.loc[clustered["cluster_id"] == NOISE, "truth"].value_counts().to_dict() == {
        "lint": 2,
        "test_assertion": 1,
        "missing_secret": 1,
    }
    assert in_clusters["truth"].nunique() == 8 and truth.nunique() == 9
    assert all(evaluation.passed for evaluation in result.get_asset_check_evaluations())


def test_a_token_a_ci_log_echoes_reaches_no_event_quarantine_or_report(ci_jobs, ci_by_date):
    folder, lines = ci_jobs
    tokens = {day: set(TOKEN.findall("\n".join(lines[day]))) for day in CI_DAYS}
    assert {day: len(found) for day, found in tokens.items()} == {"2026-11-20": 1, "2026-11-21": 3}
    reports = list((folder / "reports").iterdir())
    assert sorted(path.name for path in reports) == [
        f"error_clusters_{CI_GRAPH_DAY}.json",
        f"error_clusters_{CI_GRAPH_DAY}.md",
    ]
    for day, result in ci_by_date.items():
        dump = result.asset_value("deployment_events_dump").to_frame()
        assert any(token in str(payload) for token in tokens[day] for payload in dump["payload"])  # read
        kept = [
            result.asset_value("flattened_events").to_frame().to_json(),
            result.asset_value("event_quarantine").to_json(),
            *(path.read_text() for path in reports),
        ]
        for text in kept:
            assert "ghp_" not in text and not tokens[day] & set(TOKEN.findall(text))


def test_one_file_read_by_its_time_field_gives_each_day_the_events_of_its_own_file(
    ci_jobs, ci_by_date, tmp_path, monkeypatch
):
    folder, lines = ci_jobs
    variables = {
        **CI_VARIABLES,
        "FAULTLINE_ERROR_FILES": str(folder / "one_file" / "jobs.jsonl"),
        "FAULTLINE_ERROR_TIME_FIELD": "finished_at",
    }
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        for day in CI_DAYS:
            result = materialize(
                instance, monkeypatch, variables, day, tmp_path / "reports", READ_AND_FLATTEN
            )
            events = result.asset_value("flattened_events").to_frame()
            by_date = ci_by_date[day].asset_value("flattened_events").to_frame()
            assert len(events) == len(by_date) and run_ids(events) == run_ids(by_date)
            # The day's records only; the other day's and the broken lines (no readable time) counted.
            other_day = next(other for other in CI_DAYS if other != day)
            broken = sum(parsed(lines[d])[1] for d in CI_DAYS)
            assert metadata(result, "deployment_events_dump")["left_out"] == {
                "files_read": 1,
                "records_of_other_days": len(parsed(lines[other_day])[0]),
                "records_without_time": broken,
                "blank_lines": 0,
            }
            assert broken == 3 and result.asset_value("event_quarantine").empty


# A team's own table of deploy failures, one per row in plain columns; INFO rows are not errors.
DEPLOY_FAILURES_DDL = (
    "CREATE TABLE deploy_failures (failure_id INTEGER PRIMARY KEY, "
    "failed_at TIMESTAMP WITH TIME ZONE NOT NULL, service VARCHAR(64), error_text TEXT, level VARCHAR(16))"
)
TABLE_DAY = "2026-11-21"
TABLE_VARIABLES = {
    "FAULTLINE_ERROR_TABLE": "deploy_failures",
    "FAULTLINE_ERROR_ID_COLUMN": "failure_id",
    "FAULTLINE_ERROR_TIME_COLUMN": "failed_at",
    "FAULTLINE_ERROR_EVENT_COLUMNS": "service,error_text,level",
    "FAULTLINE_ERROR_MESSAGE_FIELD": "error_text",
    "FAULTLINE_ERROR_STATE_FIELD": "level",
    "FAULTLINE_ERROR_STATES": "ERROR,FATAL",
    "FAULTLINE_ERROR_SCOPE_FIELD": "service",
}
SERVICES = ["checkout", "billing", "search", "auth"]


def deploy_failures() -> list[dict]:
    """Three causes of the day's errors (4 OOM kills, 3 refused database connections, 3 missing
    images), 7 INFO rows and an error of the next day."""
    rows = []

    def add(hour: int, service: str, text: str, level: str) -> None:
        at = datetime(2026, 11, 21, hour, 7 * len(rows) % 60, tzinfo=UTC)
        rows.append({"id": 101 + len(rows), "at": at, "service": service, "text": text, "level": level})

    for n, service in enumerate(SERVICES):
        add(
            1 + n,
            service,
            f"OOMKilled: container {service}-{n}f3a9 exceeded its memory limit of {256 * (n + 1)}Mi",
            "ERROR",
        )
        add(2 + n, service, f"deployment of {service} started by ci-bot", "INFO")
    for n in range(3):
        add(
            8 + n,
            "billing",
            f"could not connect to postgres at 10.0.{n}.12:5432: connection refused",
            "FATAL",
        )
        add(
            12 + n,
            SERVICES[n],
            f"image registry.acme.io/{SERVICES[n]}:{n}e4b2c7d not found in registry",
            "ERROR",
        )
    for service in SERVICES[:3]:
        add(18, service, f"health check passed for {service}", "INFO")
    rows.append(
        {
            "id": 999,
            "at": datetime(2026, 11, 22, 0, 0, tzinfo=UTC),
            "service": "auth",
            "text": "OOMKilled: container auth-9 exceeded its memory limit of 128Mi",
            "level": "ERROR",
        }
    )
    return rows


def deploy_failures_table(url: str) -> dict[str, str]:
    """The table made in the database at `url` and filled with `deploy_failures()`; the variables a
    deployment reading it sets."""
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text(DEPLOY_FAILURES_DDL))
        at = sa.bindparam("at", type_=sa.DateTime(timezone=True))
        insert = "INSERT INTO deploy_failures VALUES (:id, :at, :service, :text, :level)"
        connection.execute(sa.text(insert).bindparams(at), deploy_failures())
    engine.dispose()
    return {**TABLE_VARIABLES, "FAULTLINE_EVENTS_DB_URL": url}


def test_a_postgresql_table_of_one_deploy_failure_per_row_groups_its_errors_by_cause(
    postgres_url, tmp_path, monkeypatch
):
    variables = deploy_failures_table(postgres_url)
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        result = materialize(instance, monkeypatch, variables, TABLE_DAY, tmp_path / "reports")
    flattened = metadata(result, "flattened_events")
    assert result.asset_value("deployment_events_dump").n_rows == 17  # the next day's row left out
    assert (flattened["events_read"], flattened["non_error_events"], flattened["quarantined"]) == (17, 7, 0)
    events = result.asset_value("flattened_events").to_frame()
    assert len(events) == 10 and sorted(set(events["state"])) == ["ERROR", "FATAL"]
    report = result.asset_value("error_cluster_report")
    groups = report.groups
    assert (report.n_events, report.n_clusters, report.noise_share) == (10, 3, 0)
    assert groups["n_events"].tolist() == [4, 3, 3]
    assert groups["label"].tolist() == [
        "OOMKilled: container <*> exceeded its memory limit of <*>",
        "image <*> not found in registry",
        "could not connect to postgres at <*>:5432: connection refused",
    ]
    # Each group's events are the rows of one cause.
    clustered = result.asset_value("error_clusters").events
    text_of = events.set_index("row_id")["message"]
    causes = clustered.groupby("cluster_id")["row_id"].agg(lambda ids: {text_of[i].split()[0] for i in ids})
    assert causes.tolist() == [{"OOMKilled:"}, {"image"}, {"could"}]
    # The report shows the messages as written: the generic profile, nothing taken for framing.
    assert (
        groups.loc[0, "examples"][0]
        == "OOMKilled: container checkout-0f3a9 exceeded its memory limit of 256Mi"
    )
    markdown = (tmp_path / "reports" / f"error_clusters_{TABLE_DAY}.md").read_text()
    assert "10 error events, 3 clusters, noise 0.0%." in markdown


def test_the_same_table_on_sqlite_gives_the_same_events(tmp_path, monkeypatch):
    variables = deploy_failures_table(f"sqlite:///{tmp_path / 'events.db'}")
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        result = materialize(
            instance, monkeypatch, variables, TABLE_DAY, tmp_path / "reports", READ_AND_FLATTEN
        )
    flattened = metadata(result, "flattened_events")
    assert (flattened["events_read"], flattened["non_error_events"], flattened["quarantined"]) == (17, 7, 0)
    events = result.asset_value("flattened_events").to_frame()
    expected = [row for row in deploy_failures() if row["level"] != "INFO" and row["id"] != 999]
    assert events["row_id"].tolist() == [row["id"] for row in expected]
    # As the flatten step keeps them: IP addresses redacted.
    redacted = [re.sub(r"\b10\.0\.\d\.12\b", "<ip_address>", row["text"]) for row in expected]
    assert events["message"].tolist() == redacted
    assert events["scope"].tolist() == [row["service"] for row in expected]
