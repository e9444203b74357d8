"""Hostile configuration is refused with a clear error; hostile data stays data, on SQLite and PostgreSQL.

Every configurable table and column name is checked before any SQL is sent; task types, run ids
and messages holding quotes, SQL, line breaks, control characters and any Unicode round-trip
through the workflow store, the limits, the alerts table, the alert text and webhook payload and
the reports, and never break a markdown table. A NUL character, which PostgreSQL cannot store, is
rejected with its reason.
"""

import json
import re
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import DEMO_DAY, DEMO_END, FIXED_NOW, FIXED_TODAY, fixed_clock

from assets import error_clusters
from assets.task_durations import task_duration_baselines
from dagster_project.sensors import build_long_running_tasks_sensor
from faultline.demo_data.deployment_events import frame_message, generate_deployment_batches
from faultline.report import _plain
from resources.alert_sinks import AlertSinks
from resources.alert_store import AlertStore
from resources.error_sources import ErrorEventFormat
from resources.event_store import DeploymentEventStore
from resources.part_store import PartStore
from resources.report_store import ReportStore
from resources.workflow import SqlWorkflowService

TODAY = pd.Timestamp(FIXED_TODAY)
YESTERDAY = (TODAY - timedelta(days=1)).strftime("%Y-%m-%d")
# Limits as of yesterday's midnight: runs started in the last hours are never in their window.
TWO_DAYS_AGO = (TODAY - timedelta(days=2)).strftime("%Y-%m-%d")
START, END = (TODAY - timedelta(days=14)).to_pydatetime(), TODAY.to_pydatetime()
long_running_tasks_sensor = build_long_running_tasks_sensor(clock=fixed_clock)

NOT_IDENTIFIERS = [
    "task_runs; DROP TABLE task_runs; --",
    'task_runs"; DROP TABLE task_runs; --',
    "task_runs\n",
    "task runs",
    "",
    "1task_runs",
    "täsk_runs",
    "t" * 64,
    "public.task_runs; DROP TABLE task_runs",
    "a.b.c",
]
WORKFLOW_SETTINGS = [
    "table", "run_id_columns", "task_type_columns", "started_at_column", "ended_at_column", "status_column",
]  # fmt: skip

# Data that has broken pipelines elsewhere: quotes, SQL, line breaks, control characters, markdown,
# right-to-left and combining marks, emoji, a backslash before a pipe, a long value.
HOSTILE = [
    'it\'s "quoted" `x`',
    "'; DROP TABLE task_runs; --",
    'x"); DELETE FROM alerts; --',
    "line one\nline two\r\nline three\rfour\u2028five\x85six",
    "bell\x07 escape\x1b[31m tab\there \x7f",
    "| pipe | cell |\n|---|---|",
    "back\\|slash C:\\temp\\",
    "ταξίδι 🚀 \u202eRTL\u202c e\u0301 \ufeffbom",
    "<script>alert(1)</script> **bold** [link](http://x)",
    "long " + "y" * 1000,
]


def table_cells(line: str) -> list[str]:
    """A markdown table row split on its unescaped pipes (a pipe after an even run of backslashes)."""
    cells, current, backslashes = [], "", 0
    for character in line:
        if character == "|" and backslashes % 2 == 0:
            cells.append(current)
            current = ""
        else:
            current += character
        backslashes = backslashes + 1 if character == "\\" else 0
    return cells[1:] if line.startswith("|") else cells


def assert_one_row_per_line(markdown: str, n_columns: int, n_rows: int) -> None:
    rows = [line for line in markdown.split("\n") if line.startswith("|")]
    assert len(rows) == n_rows + 2, markdown  # header and rule
    assert all(len(table_cells(row)) == n_columns for row in rows), markdown
    assert "\r" not in markdown and "\u2028" not in markdown and "\x85" not in markdown


def test_markdown_cells_split_only_on_unescaped_pipes():
    assert table_cells("| a \\| b | c\\\\| d |") == [" a \\| b ", " c\\\\", " d "]


# Hostile configuration -----------------------------------------------------------------------


def runs_frame(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["run_id", "task_type", "started_at", "ended_at", "status"])


def seeded_workflow(url: str) -> SqlWorkflowService:
    ended = TODAY - pd.Timedelta(days=2)
    workflow = SqlWorkflowService(url=url)
    workflow.write_runs(
        runs_frame([(f"r{i}", "etl", ended - pd.Timedelta(seconds=60), ended, "success") for i in range(5)])
    )
    return workflow


def count_rows(url: str, table: str) -> int:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        count = connection.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar()
    engine.dispose()
    return count


def test_workflow_names_that_are_not_plain_identifiers_are_refused_before_any_sql(store_url):
    seeded_workflow(store_url)
    calls = {
        "duration_moments": lambda w: w.duration_moments(START, END),
        "successful_runs": lambda w: w.successful_runs(START, END),
        "rejected_runs": lambda w: w.rejected_runs(START, END),
        "running_tasks": lambda w: w.running_tasks(END),
        "write_runs": lambda w: w.write_runs(runs_frame([]), replace=True),
    }
    unrefused = []
    for setting in WORKFLOW_SETTINGS:
        for name in NOT_IDENTIFIERS + ["task_runs.run_id"] * (setting != "table"):
            value = [name] if setting.endswith("_columns") else name
            for call_name, call in calls.items():
                if call_name == "write_runs" and setting != "table":
                    continue  # writes the contract's own columns, whatever the settings
                try:
                    call(SqlWorkflowService(url=store_url, **{setting: value}))
                except ValueError as error:
                    if f"{setting}={name!r} is not a plain SQL identifier" not in str(error):
                        unrefused.append((setting, name, call_name, str(error)))
                else:
                    unrefused.append((setting, name, call_name, "accepted"))
    assert unrefused == []
    for setting in ("run_id_columns", "task_type_columns"):
        with pytest.raises(ValueError, match=f"{setting} is empty; name the column"):
            SqlWorkflowService(url=store_url, **{setting: []}).running_tasks(END)
    assert count_rows(store_url, "task_runs") == 5


def test_event_table_names_that_are_not_plain_identifiers_are_refused_before_any_sql(store_url):
    store = DeploymentEventStore(url=store_url)
    store.create_table()
    store.write_batches([{"id": 1, "created_at": DEMO_END - timedelta(hours=1), "payload": "[]"}])
    calls = [
        lambda s: s.read_batches(DEMO_END - timedelta(days=1), DEMO_END),
        lambda s: s.create_table(replace=True),
        lambda s: s.write_batches([]),
    ]
    for name in NOT_IDENTIFIERS:
        for call in calls:
            refused = re.escape(f"table={name!r} is not a plain SQL identifier")
            with pytest.raises(ValueError, match=refused):
                call(DeploymentEventStore(url=store_url, table=name))
    assert count_rows(store_url, "deployment_events") == 1


def test_schema_qualified_and_reserved_names_are_read_as_names(store_url):
    """`schema.table` works (SQLite's `main`, a PostgreSQL schema); reserved words are quoted, not run."""
    engine = sa.create_engine(store_url)
    schema = "main" if engine.dialect.name == "sqlite" else "ops"
    if schema == "ops":
        with engine.begin() as connection:
            connection.execute(sa.text("CREATE SCHEMA ops"))
    runs = sa.Table(
        "select",
        sa.MetaData(),
        sa.Column("from", sa.Text(), primary_key=True),
        sa.Column("where", sa.Text()),
        sa.Column("user", sa.DateTime(timezone=True)),
        sa.Column("end", sa.DateTime(timezone=True)),
        sa.Column("order", sa.Text()),
        schema=schema,
    )
    ended = (TODAY - pd.Timedelta(days=2)).to_pydatetime()
    rows = [{"from": f"r{i}", "where": "etl", "user": ended - timedelta(seconds=60 * (i + 1)), "end": ended,
             "order": "success"} for i in range(5)]  # fmt: skip
    live = END - timedelta(minutes=5)
    rows.append({"from": "live", "where": "etl", "user": live, "end": None, "order": "running"})
    with engine.begin() as connection:
        runs.create(connection)
        connection.execute(runs.insert(), rows)
    engine.dispose()
    workflow = SqlWorkflowService(
        url=store_url, table=f"{schema}.select", run_id_columns=["from"], task_type_columns=["where"],
        started_at_column="user", ended_at_column="end", status_column="order",
    )  # fmt: skip
    moments = workflow.duration_moments(START, END)
    assert moments[["task_type", "n_runs"]].values.tolist() == [["etl", 5]]
    assert moments["mean_s"].iloc[0] == pytest.approx(180)
    running, rejected = workflow.running_tasks(END)
    assert running["run_id"].tolist() == ["live"] and rejected.empty

    events = DeploymentEventStore(url=store_url, table=f"{schema}.deployment_events")
    events.create_table()
    events.write_batches([{"id": 7, "created_at": DEMO_END - timedelta(hours=1), "payload": "[]"}])
    assert events.read_batches(DEMO_END - timedelta(days=1), DEMO_END)["id"].tolist() == [7]


# Hostile data on the duration side -----------------------------------------------------------


def hostile_runs() -> pd.DataFrame:
    """For each hostile task type: six successful runs two days ago and one run stuck for two hours."""
    ended, now = TODAY - pd.Timedelta(days=2), pd.Timestamp(FIXED_NOW)
    rows = []
    for task_type in HOSTILE:
        rows += [(f"{task_type}#{i}", task_type, ended - pd.Timedelta(seconds=60 + 10 * i), ended, "success")
                 for i in range(6)]  # fmt: skip
        rows.append((f"{task_type}#stuck", task_type, now - pd.Timedelta(hours=2), pd.NaT, "running"))
    return runs_frame(rows)


def test_hostile_task_types_and_run_ids_round_trip_through_limits_alerts_and_sinks(
    store_url, instance, recording_server
):
    workflow, alert_store = SqlWorkflowService(url=store_url), AlertStore(url=store_url)
    runs = hostile_runs()
    workflow.write_runs(runs)
    engine = sa.create_engine(store_url)
    with engine.connect() as connection:
        stored = pd.read_sql(sa.text("SELECT run_id, task_type FROM task_runs"), connection)
    engine.dispose()
    assert sorted(stored["run_id"]) == sorted(runs["run_id"])
    assert workflow.rejected_runs(START, END).empty

    baselines = dg.materialize(
        [task_duration_baselines],
        instance=instance,
        partition_key=YESTERDAY,
        resources={"workflow": workflow, "alert_store": alert_store},
    )
    limits = alert_store.latest_baselines()[1]
    assert sorted(limits["task_type"]) == sorted(HOSTILE) and limits["has_limit"].all()
    limits_md = next(iter(baselines.get_asset_materialization_events())).materialization.metadata["limits"]
    assert_one_row_per_line(limits_md.value, n_columns=7, n_rows=len(HOSTILE))

    webhook = recording_server()
    sinks = AlertSinks(webhook_url=webhook.url)
    resources = {"workflow": workflow, "alert_store": alert_store, "alert_sinks": sinks}
    tick = long_running_tasks_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    alerts = alert_store.alerts()
    expected = sorted(f"{task_type}#stuck" for task_type in HOSTILE)
    assert sorted(alerts["run_id"]) == expected
    assert sorted(alerts["task_type"]) == sorted(HOSTILE)
    payloads = [request["body"] for request in webhook.received]
    assert sorted(payload["run_id"] for payload in payloads) == expected
    assert sorted(payload["task_type"] for payload in payloads) == sorted(HOSTILE)
    assert all(payload["text"].isprintable() and "\n" not in payload["text"] for payload in payloads)
    assert_one_row_per_line(tick.asset_events[0].metadata["alerts"].value, n_columns=5, n_rows=len(HOSTILE))
    # Nothing was executed: every table is whole.
    assert count_rows(store_url, "task_runs") == len(runs)
    assert count_rows(store_url, "alerts") == len(HOSTILE)


def test_a_nul_character_in_a_task_type_or_run_id_is_rejected_with_its_reason(
    store_url, tmp_path: Path, instance
):
    """SQLite can hold a NUL; PostgreSQL cannot store it as a limit or an alert: rejected, not fatal."""
    workflow = SqlWorkflowService(url=f"sqlite:///{tmp_path / 'workflow.db'}")
    alert_store = AlertStore(url=store_url)
    runs = hostile_runs()
    nul = [("nul\x00type", "nul-type-run"), ("plain", "nul\x00run")]
    ended, now = TODAY - pd.Timedelta(days=2), pd.Timestamp(FIXED_NOW)
    for task_type, run_prefix in nul:
        started = ended - pd.Timedelta(seconds=60)
        extra = [(f"{run_prefix}#{i}", task_type, started, ended, "success") for i in range(6)]
        extra.append((f"{run_prefix}#stuck", task_type, now - pd.Timedelta(hours=2), pd.NaT, "running"))
        runs = pd.concat([runs, runs_frame(extra)], ignore_index=True)
    workflow.write_runs(runs)

    result = dg.materialize(
        [task_duration_baselines],
        instance=instance,
        partition_key=TWO_DAYS_AGO,
        resources={"workflow": workflow, "alert_store": alert_store},
    )
    metadata = next(iter(result.get_asset_materialization_events())).materialization.metadata
    reasons = metadata["rejected_reasons"].value
    assert reasons == {"NUL character in task_type": 6, "NUL character in run_id": 6}
    assert sorted(alert_store.latest_baselines()[1]["task_type"]) == sorted(HOSTILE)

    _, rejected = workflow.running_tasks(now.to_pydatetime())
    assert sorted(rejected["reason"]) == ["NUL character in run_id", "NUL character in task_type"]
    resources = {"workflow": workflow, "alert_store": alert_store, "alert_sinks": AlertSinks()}
    tick = long_running_tasks_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert ", 2 unreadable;" in tick.asset_events[0].description
    assert sorted(alert_store.alerts()["task_type"]) == sorted(HOSTILE)


# Hostile data on the error side --------------------------------------------------------------


def hostile_rows(created_at) -> list[dict]:
    """Each hostile text as the error message, five times (a cluster), framed and bare; broken rows."""
    texts = HOSTILE + ["nul \x00 in a message", "lone surrogate \ud800 here"]
    events = []
    for n, text in enumerate(texts):
        for k in range(5):
            scope_line = f"Application 'hostile{n}' with id 'zh{n}'"
            message = frame_message(f"e{n}-{k}", scope_line, text, f"fix {text}")
            events.append({"scope": "APPLICATION", "state": "DEPLOYMENT_ERROR", "message": message})
        events.append({"scope": text, "state": "BUILD_ERROR", "message": text})
    rows = [{"id": 500_000, "created_at": created_at, "payload": json.dumps(events)}]
    rows.append({"id": 500_001, "created_at": created_at, "payload": "{broken | cell\n| next"})
    return rows


def test_hostile_messages_stay_data_in_the_corpus_and_never_break_the_reports(store_url, instance, tmp_path):
    demo = generate_deployment_batches(end=DEMO_END, days=1, n_error_events=150, seed=4)
    planted = hostile_rows(DEMO_END - timedelta(hours=2))
    store = DeploymentEventStore(url=store_url)
    store.create_table()
    store.write_batches(demo + planted)
    reports = tmp_path / "reports"
    result = dg.materialize(
        dg.load_assets_from_modules([error_clusters]),
        instance=instance,
        partition_key=DEMO_DAY,
        resources={
            "event_store": store,
            "error_format": ErrorEventFormat(),
            "report_store": ReportStore(directory=str(reports)),
            "part_store": PartStore(),
        },
    )
    assert result.success

    sent = json.loads(planted[0]["payload"])
    events = result.asset_value("flattened_events").to_frame()
    kept = events[events["row_id"] == 500_000]
    assert kept["message"].tolist() == [event["message"] for event in sent]
    assert kept["scope"].tolist() == [event["scope"] for event in sent]
    corpus = result.asset_value("cleaned_corpus")
    assert (corpus.events["row_id"] == 500_000).sum() == len(sent)
    quarantine = result.asset_value("event_quarantine")
    assert quarantine["row_id"].tolist() == [500_001]

    report = result.asset_value("error_cluster_report")
    saved = json.loads((reports / f"error_clusters_{DEMO_DAY}.json").read_text())
    examples = {example for group in saved["groups"] for example in group["examples"]}
    # Exact, whatever they hold; an example over 2,000 characters is cut there and ends with "…".
    cut = {message[:1999] + "…" for message in events["message"] if len(message) > 2000}
    assert examples <= set(events["message"]) | cut
    assert examples & {event["message"] for event in sent}
    markdown = (reports / f"error_clusters_{DEMO_DAY}.md").read_text()
    n_clusters = int((report.groups["cluster_id"] >= 0).sum())
    shown_rows = min(n_clusters, 30) + (n_clusters > 30) + int((report.groups["cluster_id"] < 0).sum())
    assert_one_row_per_line(markdown, n_columns=7, n_rows=shown_rows)
    metadata = {
        event.asset_key.to_user_string(): event.materialization.metadata
        for event in result.get_asset_materialization_events()
    }
    # In the UI, the groups are a table of plain text: one record per row of the file's table, each
    # label as the report holds it.
    records = [record.data for record in metadata["error_cluster_report"]["groups"].value.records]
    assert len(records) == shown_rows
    shown_labels = [record["label"] for record in records if record["group"].startswith("cluster ")]
    assert shown_labels == [_plain(label) for label in report.groups["label"][: len(shown_labels)]]
    assert_one_row_per_line(metadata["event_quarantine"]["preview"].value, n_columns=5, n_rows=1)
