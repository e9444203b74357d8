"""The error-cluster graph materialized end to end over generated stores."""

import json
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from conftest import DEMO_DAY, DEMO_END, seeded_event_store
from sklearn.metrics import adjusted_rand_score

from assets import error_clusters
from faultline.demo_data.deployment_events import generate_deployment_batches
from resources.error_sources import ErrorEventFormat
from resources.frame_parts import COMMITTED
from resources.part_store import PartStore
from resources.report_store import ReportStore

ASSETS = dg.load_assets_from_modules([error_clusters])


def materialize_day(instance, event_store, report_store, day: str = DEMO_DAY, run_config=None):
    return dg.materialize(
        ASSETS,
        instance=instance,
        partition_key=day,
        resources={
            "event_store": event_store,
            "error_format": ErrorEventFormat(),
            "report_store": report_store,
            "part_store": PartStore(),
        },
        run_config=run_config,
    )


def check_evaluation(result, check_name: str) -> dg.AssetCheckEvaluation:
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == check_name)


def check_passed(result, check_name: str) -> bool:
    return check_evaluation(result, check_name).passed


def day_truth(rows: list[dict], day: str) -> pd.Series:
    """The hidden root cause of each error event of `day`, in the store's order."""
    causes = []
    for row in rows:
        if row["created_at"].strftime("%Y-%m-%d") == day:
            causes.extend(e["root_cause"] for e in json.loads(row["payload"]) if e["root_cause"])
    return pd.Series(causes)


@pytest.fixture(scope="module")
def demo_day_result(tmp_path_factory, demo_rows):
    """The demo store's latest day through the whole graph, once for the module."""
    folder = tmp_path_factory.mktemp("demo")
    (folder / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(folder / "home")) as instance:
        store = seeded_event_store(folder, demo_rows)
        report_store = ReportStore(directory=str(folder / "reports"))
        yield materialize_day(instance, store, report_store), folder


def test_clusters_recover_the_demo_root_causes(demo_rows, demo_day_result):
    result, _ = demo_day_result
    clusters = result.asset_value("error_clusters").events
    truth = day_truth(demo_rows, DEMO_DAY)
    assert len(clusters) == len(truth) > 500
    assert adjusted_rand_score(truth, clusters["cluster_id"]) >= 0.9


def test_top_five_root_causes_get_a_cluster_with_their_true_share(demo_rows, demo_day_result):
    result, _ = demo_day_result
    clusters = result.asset_value("error_clusters").events.assign(
        truth=day_truth(demo_rows, DEMO_DAY).to_numpy()
    )
    report = result.asset_value("error_cluster_report").groups.set_index("cluster_id")
    for cause, true_share in clusters["truth"].value_counts(normalize=True).head(5).items():
        matching_cluster = clusters.loc[clusters["truth"] == cause, "cluster_id"].mode()[0]
        assert matching_cluster >= 0, f"{cause} fell into noise"
        assert abs(report.loc[matching_cluster, "share_pct"] - 100 * true_share) <= 2.0, cause


def test_a_day_read_in_many_parts_on_two_processes_gives_the_result_of_one_part(
    tmp_path: Path, instance, demo_rows, demo_day_result
):
    in_parts = {
        "deployment_events_dump": {"config": {"rows_per_part": 15}},
        "flatten_events": {"config": {"workers": 2}},
        "cleaned_corpus": {"config": {"workers": 2}},
    }
    store, reports = seeded_event_store(tmp_path, demo_rows), ReportStore(directory=str(tmp_path / "reports"))
    result = materialize_day(instance, store, reports, run_config={"ops": in_parts})
    one_part, folder = demo_day_result
    assert result.asset_value("deployment_events_dump").n_parts > 10
    assert one_part.asset_value("deployment_events_dump").n_parts == 1
    pd.testing.assert_frame_equal(
        result.asset_value("error_clusters").events, one_part.asset_value("error_clusters").events
    )
    pd.testing.assert_frame_equal(
        result.asset_value("error_cluster_report").groups, one_part.asset_value("error_cluster_report").groups
    )
    name = f"error_clusters_{DEMO_DAY}.md"
    assert (tmp_path / "reports" / name).read_text() == (folder / "reports" / name).read_text()


def test_report_ranks_groups_with_shares_of_all_error_events(demo_rows, demo_day_result):
    result, folder = demo_day_result
    report = result.asset_value("error_cluster_report")
    groups = report.groups
    assert report.n_events == len(day_truth(demo_rows, DEMO_DAY))
    assert groups["n_events"].sum() == report.n_events
    assert groups["share_pct"].sum() == pytest.approx(100, abs=0.05)
    clusters = groups[groups["cluster_id"] >= 0]
    assert clusters["n_events"].is_monotonic_decreasing
    assert clusters.iloc[0]["label"].startswith("Qovery can't build your container image app")
    assert all(len(examples) == 3 for examples in clusters.head(10)["examples"])
    markdown = (folder / "reports" / f"error_clusters_{DEMO_DAY}.md").read_text()
    assert f"{report.n_events} error events, {report.n_clusters} clusters" in markdown
    saved = json.loads((folder / "reports" / f"error_clusters_{DEMO_DAY}.json").read_text())
    assert saved["n_events"] == report.n_events and len(saved["groups"]) == len(groups)


def test_report_metadata_carries_the_numbers_the_ui_plots(demo_day_result):
    result, _ = demo_day_result
    materialization = next(
        e.materialization
        for e in result.get_asset_materialization_events()
        if e.materialization.asset_key == dg.AssetKey("error_cluster_report")
    )
    metadata = materialization.metadata
    report = result.asset_value("error_cluster_report")
    # The day first: the newest day is the first thing to look for among materializations.
    assert list(metadata)[0] == "day" and metadata["day"].value == DEMO_DAY
    assert metadata["n_events"].value == report.n_events
    assert metadata["n_clusters"].value == report.n_clusters
    assert metadata["noise_share"].value == round(report.noise_share, 4) != report.noise_share
    assert metadata["top_cluster_share"].value == round(report.top_cluster_share, 4)


def test_the_report_shows_its_groups_as_a_native_table_with_labels_intact(demo_day_result):
    result, folder = demo_day_result
    metadata = result.asset_materializations_for_node("error_cluster_report")[0].metadata
    table = metadata["groups"].value
    assert [column.name for column in table.schema.columns] == [
        "group", "share_pct", "events", "label", "hint", "examples", "terms"
    ]  # fmt: skip
    records = [record.data for record in table.records]
    report = result.asset_value("error_cluster_report")
    n_clusters = int((report.groups["cluster_id"] >= 0).sum())
    assert len(records) == min(n_clusters, 30) + (n_clusters > 30) + int(
        (report.groups["cluster_id"] < 0).sum()
    )
    top = records[0]
    assert top["group"] == "cluster 0" and top["events"] == int(report.groups.iloc[0]["n_events"])
    assert top["share_pct"] == round(top["share_pct"], 2) == report.groups.iloc[0]["share_pct"]
    # The label as the report has it, `<*>` and all (no markdown escaping in a table cell).
    assert top["label"] == report.groups.iloc[0]["label"]
    assert top["label"].startswith("Qovery can't build your container image app <*>")
    assert top["examples"].startswith("1. ") and "  ·  2. " in top["examples"]
    assert "noise" in [record["group"] for record in records]
    assert "report" not in metadata  # the markdown is in the file
    assert (
        (folder / "reports" / f"error_clusters_{DEMO_DAY}.md")
        .read_text()
        .startswith(f"# Deployment errors on {DEMO_DAY}")
    )


def test_every_float_in_the_graphs_metadata_is_rounded(demo_day_result):
    result, _ = demo_day_result
    floats = {
        f"{event.asset_key.to_user_string()}/{key}": value.value
        for event in result.get_asset_materialization_events()
        for key, value in event.materialization.metadata.items()
        if isinstance(value, dg.FloatMetadataValue)
    }
    floats |= {
        f"{evaluation.check_name}/{key}": value.value
        for evaluation in result.get_asset_check_evaluations()
        for key, value in evaluation.metadata.items()
        if isinstance(value, dg.FloatMetadataValue)
    }
    assert "error_clusters/noise_share" in floats and "quarantine_share_is_low/quarantine_share" in floats
    assert {key: value for key, value in floats.items() if round(value, 4) != value} == {}


def test_each_check_says_what_it_found_with_the_measured_value_and_the_threshold(demo_day_result):
    result, _ = demo_day_result
    rows = result.asset_value("deployment_events_dump").n_rows
    dump = check_evaluation(result, "dump_has_rows")
    assert dump.passed and dump.description == f"The store had {rows:,} rows for {DEMO_DAY}."
    assert (dump.metadata["rows"].value, dump.metadata["min_rows"].value) == (rows, 1)
    noise = check_evaluation(result, "noise_share_is_normal")
    events = result.asset_value("error_clusters").events
    n_noise = int((events["cluster_id"] == -1).sum())
    assert noise.passed and noise.description == (
        f"{n_noise / len(events):.1%} of the day's error events fell in no cluster ({n_noise:,} of "
        f"{len(events):,}): within the 20% allowed."
    )
    assert noise.metadata["max_share"].value == 0.2
    assert noise.metadata["noise_share"].value == round(n_noise / len(events), 4)
    quarantine = check_evaluation(result, "quarantine_share_is_low")
    assert quarantine.passed and quarantine.description.endswith(": within the 5% allowed.")
    assert quarantine.metadata["max_share"].value == 0.05


def test_every_check_has_a_description():
    specs = [spec for asset in ASSETS for spec in asset.check_specs]
    assert {spec.name for spec in specs} == {
        "dump_has_rows",
        "quarantine_share_is_low",
        "noise_share_is_normal",
    }
    assert all(spec.description for spec in specs)


def test_non_error_events_are_left_out_and_counted(demo_rows, demo_day_result):
    result, _ = demo_day_result
    flattened_materialization = next(
        e.materialization
        for e in result.get_asset_materialization_events()
        if e.materialization.asset_key == dg.AssetKey("flattened_events")
    )
    metadata = flattened_materialization.metadata
    assert metadata["non_error_events"].value > 0
    assert (
        metadata["events_read"].value
        == metadata["non_error_events"].value + metadata["dagster/row_count"].value
    )
    assert set(result.asset_value("flattened_events").to_frame()["state"]) == {
        "BUILD_ERROR",
        "DEPLOYMENT_ERROR",
    }


def test_the_same_day_twice_gives_the_same_clusters(tmp_path: Path, instance, report_store):
    rows = generate_deployment_batches(end=DEMO_END, days=1, n_error_events=400, seed=5)
    store = seeded_event_store(tmp_path, rows)
    first = materialize_day(instance, store, report_store).asset_value("error_clusters").events
    second = materialize_day(instance, store, report_store).asset_value("error_clusters").events
    assert first["cluster_id"].nunique() > 5
    assert first["cluster_id"].tolist() == second["cluster_id"].tolist()


def test_bad_records_are_quarantined_and_the_run_succeeds(tmp_path: Path, instance, report_store):
    good = generate_deployment_batches(end=DEMO_END, days=1, n_error_events=60, seed=2)
    created_at = good[0]["created_at"]
    event = {"scope": "ENVIRONMENT", "state": "DEPLOYMENT_ERROR"}
    bad = [
        {"id": 9001, "created_at": created_at, "payload": "{not json"},
        {"id": 9002, "created_at": created_at, "payload": json.dumps({"events": []})},
        {"id": 9003, "created_at": created_at, "payload": json.dumps([event])},
        {
            "id": 9004,
            "created_at": created_at,
            "payload": json.dumps([{**event, "message": "x" * 1_048_576}]),
        },
        {"id": 9005, "created_at": created_at, "payload": b'[{"message": "caf\xe9"}]'},
    ]
    store = seeded_event_store(tmp_path, good + bad)
    result = materialize_day(instance, store, report_store)
    assert result.success
    quarantine = result.asset_value("event_quarantine")
    assert quarantine[["row_id", "reason"]].values.tolist() == [
        [9001, "payload_not_json"],
        [9002, "payload_not_a_list"],
        [9003, "event_missing_field"],
        [9004, "message_too_long"],
        [9005, "payload_not_utf8"],
    ]
    good_errors = sum(1 for row in good for e in json.loads(row["payload"]) if e["root_cause"])
    assert result.asset_value("error_cluster_report").n_events == good_errors
    assert check_passed(result, "quarantine_share_is_low")  # 5 unreadable records among ~150


def test_a_day_of_mostly_unreadable_records_warns(tmp_path: Path, instance, report_store):
    created_at = DEMO_END - pd.Timedelta(hours=3)
    rows = [{"id": n, "created_at": created_at, "payload": "[{broken"} for n in range(1, 4)]
    rows.append(
        {
            "id": 4,
            "created_at": created_at,
            "payload": json.dumps([{"scope": "A", "state": "X", "message": "m"}]),
        }
    )
    result = materialize_day(instance, seeded_event_store(tmp_path, rows), report_store)
    assert result.success
    assert len(result.asset_value("event_quarantine")) == 3
    quarantine = check_evaluation(result, "quarantine_share_is_low")
    assert not quarantine.passed
    assert quarantine.description == (
        "75.0% of the day's records could not be read (3 of 4): above the 5% allowed."
    )
    assert (quarantine.metadata["quarantine_share"].value, quarantine.metadata["max_share"].value) == (
        0.75,
        0.05,
    )


def test_an_empty_day_gives_an_empty_report_that_says_so(tmp_path: Path, instance, report_store):
    store = seeded_event_store(tmp_path, [])
    result = materialize_day(instance, store, report_store)
    assert result.success
    assert result.asset_value("error_cluster_report").n_events == 0
    dump = check_evaluation(result, "dump_has_rows")
    assert not dump.passed
    assert dump.description == f"The store had no rows for {DEMO_DAY}: the report will be empty."
    markdown = (tmp_path / "reports" / f"error_clusters_{DEMO_DAY}.md").read_text()
    assert "No error events on this day" in markdown


def test_doc2vec_keeps_the_seeds_values_and_dbscan_groups_templates_by_default():
    doc2vec = error_clusters.Doc2VecConfig()
    assert (doc2vec.vector_size, doc2vec.window, doc2vec.min_count, doc2vec.epochs) == (80, 2, 1, 1000)
    dbscan = error_clusters.DBSCANConfig()
    assert (dbscan.eps, dbscan.min_samples, dbscan.metric, dbscan.center_vectors) == (
        0.005,
        2,
        "cosine",
        True,
    )


def test_the_seeds_dbscan_values_are_one_config_away_and_group_coarser(
    tmp_path: Path, instance, report_store, demo_rows, demo_day_result
):
    seed_dbscan = {
        "eps": 0.2,
        "min_samples": 5,
        "center_vectors": False,
        "merge_clusters_sharing_hint": False,
    }
    result = materialize_day(
        instance,
        seeded_event_store(tmp_path, demo_rows),
        report_store,
        run_config={"ops": {"error_clusters": {"config": seed_dbscan}}},
    )
    default_result, _ = demo_day_result

    def dbscan_clusters(materialization) -> int:
        event = materialization.asset_materializations_for_node("error_clusters")[0]
        return event.metadata["n_dbscan_clusters"].value

    # The seed's eps 0.2 on raw vectors merges templates the default keeps apart.
    assert dbscan_clusters(result) < dbscan_clusters(default_result) / 2


def test_the_report_reads_the_clusters_alone_so_it_never_pairs_them_with_another_corpus():
    report = next(a for a in ASSETS if dg.AssetKey("error_cluster_report") in a.keys)
    assert set(report.asset_deps[dg.AssetKey("error_cluster_report")]) == {dg.AssetKey("error_clusters")}


def test_a_day_whose_dump_is_past_its_retention_cannot_be_flattened_again_and_is_told_why(
    tmp_path: Path, instance, report_store
):
    """With the defaults, the dump is kept 3 days after it is written and the flattened events 30: a
    day written 4 days ago can be clustered again from its flattened events, not flattened again."""
    store = seeded_event_store(
        tmp_path, generate_deployment_batches(end=DEMO_END, days=2, n_error_events=200)
    )
    earlier_day = "2026-11-20"
    resources = {
        "event_store": store,
        "error_format": ErrorEventFormat(),
        "report_store": report_store,
        "part_store": PartStore(),
    }

    def materialize(selection: list[str], day: str):
        return dg.materialize(
            ASSETS,
            instance=instance,
            partition_key=day,
            resources=resources,
            selection=selection,
            raise_on_error=False,
        )

    dump_and_flatten = ["deployment_events_dump", "flattened_events", "event_quarantine"]
    earlier = materialize(dump_and_flatten, earlier_day)
    for name in ("deployment_events_dump", "flattened_events"):
        committed = Path(earlier.asset_value(name).directory) / COMMITTED
        committed.write_text(repr(time.time() - 4 * 86400))
    assert materialize(dump_and_flatten, DEMO_DAY).success  # the next write sweeps every day

    again = materialize(["flattened_events", "event_quarantine"], earlier_day)
    assert not again.success
    (failure,) = again.get_step_failure_events()
    error = failure.step_failure_data.error.to_string()
    assert "PartsExpiredError" in error
    assert "deployment_events_dump for 2026-11-20 were removed" in error
    assert "kept 3 days after they are written" in error
    assert materialize(["cleaned_corpus"], earlier_day).success
