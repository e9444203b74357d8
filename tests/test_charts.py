"""The charts: the largest error groups' daily share, and flagged task types against their limits."""

import base64
import json
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from conftest import DEMO_END, FIXED_NOW, seeded_event_store

from assets import error_clusters
from assets.charts import duration_limit_chart, error_share_chart
from assets.task_durations import task_duration_baselines
from faultline import charts
from faultline.charts import PNG_SIGNATURE
from faultline.demo_data.deployment_events import generate_deployment_batches
from faultline.demo_data.task_runs import generate_task_runs
from faultline.durations import find_overdue_tasks
from resources.alert_store import QUEUED, AlertStore
from resources.error_sources import ErrorEventFormat
from resources.part_store import PartStore
from resources.report_store import ReportStore
from resources.workflow import SqlWorkflowService

NOW = pd.Timestamp(FIXED_NOW)


def group(cluster_id: int, share_pct: float, label: str, name: str = "") -> dict:
    return {"cluster_id": cluster_id, "name": name or f"cluster {cluster_id}", "share_pct": share_pct,
            "n_events": int(share_pct * 10), "label": label, "hint": ""}  # fmt: skip


# Three days of reports: the two big groups swap cluster numbers from day to day, a third comes and goes.
DOCUMENTS = [
    {"day": "2026-11-19", "groups": [group(0, 50.0, "image pull <*> failed"), group(1, 30.0, "OOMKilled <*>"),
                                     group(-1, 20.0, "", "noise")]},
    {"day": "2026-11-20", "groups": [group(0, 60.0, "OOMKilled <*>"), group(1, 10.0, "image pull <*> failed"),
                                     group(2, 5.0, "quota <*> exceeded"), group(-1, 25.0, "", "noise")]},
    {"day": "2026-11-21", "groups": [group(0, 70.0, "OOMKilled <*>"), group(1, 30.0, "quota <*> exceeded")]},
]  # fmt: skip


def test_groups_are_matched_across_days_by_label_and_ranked_by_mean_share():
    shares = charts.daily_group_shares(DOCUMENTS, "2026-11-21", days_shown=14, groups_shown=2)
    # Mean shares: OOMKilled (30 + 60 + 70) / 3 = 53.3, image pull (50 + 10 + 0) / 3 = 20,
    # quota (0 + 5 + 30) / 3 = 11.7.
    assert list(shares.columns) == ["OOMKilled <*>", "image pull <*> failed"]
    assert list(shares.index) == ["2026-11-19", "2026-11-20", "2026-11-21"]
    assert shares["OOMKilled <*>"].tolist() == [30.0, 60.0, 70.0]
    assert shares["image pull <*> failed"].tolist() == [50.0, 10.0, 0.0]


def test_noise_is_no_group_and_two_clusters_with_one_label_are_one():
    documents = [{"day": "2026-11-21", "groups": [group(0, 40.0, "a <*>"), group(1, 35.0, "a <*>"),
                                                  group(-1, 60.0, "", "noise")]}]  # fmt: skip
    shares = charts.daily_group_shares(documents, "2026-11-21")
    assert shares.to_dict(orient="list") == {"a <*>": [75.0]}


def test_only_the_days_shown_up_to_the_last_day_are_drawn():
    shares = charts.daily_group_shares(DOCUMENTS, "2026-11-20", days_shown=1)
    assert list(shares.index) == ["2026-11-20"]


def test_the_chart_is_a_png_of_the_table_it_returns():
    chart = charts.error_share_chart(DOCUMENTS, "2026-11-21", groups_shown=3)
    assert chart.png.startswith(PNG_SIGNATURE) and chart.message is None
    pd.testing.assert_frame_equal(
        chart.data, charts.daily_group_shares(DOCUMENTS, "2026-11-21", groups_shown=3)
    )


@pytest.mark.parametrize(
    "documents, says",
    [([], "no report in the 14 days up to 2026-11-21. Materialize error_cluster_report"),
     ([{"day": "2026-11-21", "groups": [group(-1, 100.0, "", "noise")]}], "hold no error group")],
)  # fmt: skip
def test_an_empty_history_draws_a_message_not_a_crash(documents, says):
    chart = charts.error_share_chart(documents, "2026-11-21")
    assert chart.png.startswith(PNG_SIGNATURE)
    assert says in chart.message


def test_labels_from_the_data_are_drawn_as_text_not_as_formulas():
    # Two `$` would start matplotlib's mathtext, which fails on `\frac{`.
    labels = [r"cost $\frac{ <*> $ over", "_private <*>", "line\nbreak \x00 <*>", "x" * 500]
    documents = [{"day": "2026-11-21", "groups": [group(i, 10.0, label) for i, label in enumerate(labels)]}]
    chart = charts.error_share_chart(documents, "2026-11-21", groups_shown=4)
    assert chart.png.startswith(PNG_SIGNATURE) and sorted(chart.data.columns) == sorted(labels)


def alert(task_type: str, run_id: str, elapsed_s: float, limit_s: float, mean_s: float, raised: str) -> dict:
    return {"task_type": task_type, "run_id": run_id, "started_at": NOW - pd.Timedelta(seconds=elapsed_s),
            "elapsed_s": elapsed_s, "upper_limit_s": limit_s, "mean_s": mean_s,
            "raised_at": pd.Timestamp(raised, tz="UTC")}  # fmt: skip


ALERTS = pd.DataFrame(
    [alert("etl.orders", "o-1", 900.0, 300.0, 200.0, "2026-11-22 05:50"),
     alert("etl.orders", "o-2", 1500.0, 310.0, 205.0, "2026-11-22 06:00"),
     alert("ml.train", "t-1", 7200.0, 3600.0, 3000.0, "2026-11-22 06:00"),
     alert("etl.old", "x-1", 99_999.0, 10.0, 5.0, "2026-11-20 06:00")]
)  # fmt: skip
RUNS = pd.DataFrame(
    {"task_type": ["etl.orders"] * 3 + ["ml.train"] * 2 + ["etl.other"],
     "started_at": [NOW - pd.Timedelta(hours=h) for h in (30, 20, 10, 30, 10, 5)],
     "duration_s": [190.0, 200.0, 210.0, 2900.0, 3100.0, 50.0]}
)  # fmt: skip


def test_recent_alerts_are_those_within_the_hours_of_the_newest():
    assert sorted(charts.recent_alerts(ALERTS, hours=24)["run_id"]) == ["o-1", "o-2", "t-1"]
    assert sorted(charts.recent_alerts(ALERTS, hours=0.1)["run_id"]) == ["o-2", "t-1"]


def test_each_flagged_task_type_has_its_runs_its_newest_limit_and_how_far_past_it_is():
    table = charts.flagged_task_types(RUNS, charts.recent_alerts(ALERTS, hours=24)).set_index("task_type")
    # etl.orders: longest 1500 s past the newest limit 310 s, 4.84x; ml.train: 7200 / 3600 = 2x.
    assert list(table.index) == ["etl.orders", "ml.train"]
    assert table.loc["etl.orders"].to_dict() == {"runs": 3, "mean_s": 205.0, "upper_limit_s": 310.0,
        "flagged_runs": 2, "longest_elapsed_s": 1500.0, "times_limit": 4.84}  # fmt: skip
    assert table.loc["ml.train", "runs"] == 2 and table.loc["ml.train", "times_limit"] == 2.0
    assert list(charts.flagged_task_types(RUNS, ALERTS, task_types_shown=1)["task_type"]) == ["etl.old"]


def test_the_duration_chart_is_a_png_and_without_alerts_says_so():
    chart = charts.duration_limit_chart(RUNS, ALERTS)
    assert chart.png.startswith(PNG_SIGNATURE) and len(chart.data) == 3 and chart.message is None
    empty = charts.duration_limit_chart(RUNS, ALERTS.iloc[0:0])
    assert empty.png.startswith(PNG_SIGNATURE) and empty.data.empty
    assert empty.message == "Nothing to draw: no running task has been flagged past its limit."


def metadata_of(result: dg.ExecuteInProcessResult, key: str) -> dict:
    event = next(e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(key))
    return {name: value.value for name, value in event.materialization.metadata.items()}


def embedded_png(markdown: str) -> bytes:
    prefix = "](data:image/png;base64,"
    assert markdown.startswith("![") and prefix in markdown and markdown.endswith(")")
    return base64.b64decode(markdown.split(prefix, 1)[1][:-1])


def test_the_share_chart_asset_draws_the_reports_of_the_days_before_it(tmp_path: Path, instance):
    rows = generate_deployment_batches(end=DEMO_END, days=2, n_error_events=800)
    store = seeded_event_store(tmp_path, rows)
    report_store = ReportStore(directory=str(tmp_path / "reports"))
    assets = [*dg.load_assets_from_modules([error_clusters]), error_share_chart]
    resources = {
        "event_store": store,
        "error_format": ErrorEventFormat(),
        "report_store": report_store,
        "part_store": PartStore(),
    }
    for day in ("2026-11-20", "2026-11-21"):
        result = dg.materialize(assets, instance=instance, partition_key=day, resources=resources)

    metadata = metadata_of(result, "error_share_chart")
    png = (tmp_path / "reports" / "error_clusters_2026-11-21-shares.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE) and embedded_png(metadata["chart"]) == png
    assert metadata["days_with_a_report"] == 2
    report = json.loads((tmp_path / "reports" / "error_clusters_2026-11-21.json").read_text())
    share_by_label: dict[str, float] = {}
    for group_ in report["groups"]:
        if group_["cluster_id"] >= 0:
            share_by_label[group_["label"]] = share_by_label.get(group_["label"], 0.0) + group_["share_pct"]
    drawn = [record.data for record in metadata["groups"].records]
    assert [row["rank"] for row in drawn] == [1, 2, 3, 4, 5]
    # A group of the day before only is drawn at 0 on this day.
    for row in drawn:
        assert row["share_on_day_pct"] == pytest.approx(share_by_label.get(row["label"], 0.0))
    assert drawn[0]["share_on_day_pct"] > 0 and drawn[0]["days_seen"] == 2
    assert any("<*>" in row["label"] for row in drawn)


def test_the_share_chart_of_a_day_without_reports_says_what_to_do(tmp_path: Path, instance):
    report_store = ReportStore(directory=str(tmp_path / "reports"))
    result = dg.materialize(
        [error_share_chart],
        instance=instance,
        partition_key="2026-11-21",
        resources={"report_store": report_store},
    )
    metadata = metadata_of(result, "error_share_chart")
    assert metadata["days_with_a_report"] == 0 and "no report in the 14 days" in metadata["message"]
    assert (
        (tmp_path / "reports" / "error_clusters_2026-11-21-shares.png").read_bytes().startswith(PNG_SIGNATURE)
    )


def test_the_limit_chart_asset_draws_the_task_types_the_alerts_flagged(tmp_path: Path, instance):
    url = f"sqlite:///{tmp_path / 'workflow.db'}"
    workflow, alert_store = SqlWorkflowService(url=url), AlertStore(url=url)
    demo = generate_task_runs(NOW, days=28)
    workflow.write_runs(demo.runs)
    report_store = ReportStore(directory=str(tmp_path / "reports"))
    dg.materialize([task_duration_baselines], instance=instance, partition_key="2026-11-21",
                   resources={"workflow": workflow, "alert_store": alert_store})  # fmt: skip
    # What a sensor tick at NOW records.
    _, limits = alert_store.latest_baselines()
    running, _ = workflow.running_tasks(FIXED_NOW)
    alert_store.record_alerts(find_overdue_tasks(running, limits, NOW).overdue, raised_at=FIXED_NOW)
    # A queue alert, raised later, of a task type queued too long: a wait, not drawn against the runs.
    queued = pd.DataFrame([{"run_id": "q-1", "task_type": "queue.only", "started_at": NOW, "elapsed_s": 900.0,
                            "upper_limit_s": 60.0, "mean_s": 10.0, "n_runs": 9}])  # fmt: skip
    alert_store.record_alerts(queued, raised_at=FIXED_NOW + timedelta(hours=30), phase=QUEUED)

    result = dg.materialize(
        [duration_limit_chart], instance=instance,
        resources={"workflow": workflow, "alert_store": alert_store, "report_store": report_store},
    )  # fmt: skip
    metadata = metadata_of(result, "duration_limit_chart")
    flagged = demo.runs[demo.runs["run_id"].isin(demo.expected_overdue_run_ids)]
    drawn = pd.DataFrame([record.data for record in metadata["task_types"].records]).set_index("task_type")
    assert set(drawn.index) == set(flagged["task_type"]) and metadata["flagged_runs"] == len(flagged)
    ended = demo.runs["ended_at"]
    since = NOW.tz_localize(None) - pd.Timedelta(days=14)
    window = demo.runs[
        (demo.runs["status"] == "success") & (ended >= since) & (ended < NOW.tz_localize(None))
    ]
    assert drawn["runs"].to_dict() == window["task_type"].value_counts().reindex(drawn.index).to_dict()
    assert (drawn["times_limit"] > 1).all()
    png = (tmp_path / "reports" / "duration_limits.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE) and embedded_png(metadata["chart"]) == png
