"""FAULTLINE_WORKFLOW_SOURCE=dagster learns a limit for each job and each of its steps (an asset's
step too) from a real instance's runs, and flags a step running past its own limit (issue 15)."""

import json
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from conftest import until
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget

from assets.settings import Settings
from assets.task_durations import WATCHED_ASSET_CHECK, BaselineConfig, watched_asset_keys
from dagster_project.definitions import build_definitions
from dagster_project.sensors import build_long_running_tasks_sensor
from faultline.alerting import alert_payload, alert_text
from resources.dagster_steps import DagsterRunsAndStepsWorkflowService

RELEASE = threading.Event()


class OrdersConfig(dg.Config):
    seconds: float = 0.2
    hang: bool = False


@dg.asset
def customers() -> None:
    time.sleep(0.1)


@dg.asset(deps=[customers])
def orders(config: OrdersConfig) -> None:
    if config.hang:
        RELEASE.wait(120)
    time.sleep(config.seconds)


shop = dg.Definitions(
    assets=[customers, orders],
    jobs=[
        dg.define_asset_job("refresh", selection=[customers, orders]),
        # A job new to the instance that materializes orders alone.
        dg.define_asset_job("rebuild", selection=[orders]),
    ],
)
refresh, rebuild = shop.resolve_job_def("refresh"), shop.resolve_job_def("rebuild")


def run_refresh(instance: dg.DagsterInstance, job: dg.JobDefinition = refresh, **orders_config):
    return job.execute_in_process(
        instance=instance, run_config={"ops": {"orders": {"config": orders_config}}}
    )


def five_refreshes_learned(monkeypatch, tmp_path, instance) -> tuple[dg.Definitions, pd.DataFrame]:
    """Five runs of real work (orders takes 0.2, 0.25, ... 0.4 s, customers 0.1 s), and the limits the
    dagster source, set by variables, learns from them today."""
    for i in range(5):
        assert run_refresh(instance, seconds=0.2 + 0.05 * i).success
    for name, value in {
        "FAULTLINE_WORKFLOW_SOURCE": "dagster",
        "FAULTLINE_DB_URL": f"sqlite:///{tmp_path / 'faultline.db'}",
        "FAULTLINE_START_DATE": (datetime.now(UTC) - timedelta(days=30)).strftime("%Y-%m-%d"),
        "FAULTLINE_ERROR_CLUSTERS": "off",
        "FAULTLINE_DAGSTER_BASE_URL": "http://dagster.example.com:3000/",
    }.items():
        monkeypatch.setenv(name, value)
    built = build_definitions(Settings.from_env())
    assert type(built.resources["workflow"]) is DagsterRunsAndStepsWorkflowService

    # Today's limits, as the daily job learns them once the day is over.
    resources = {name: built.resources[name] for name in ("workflow", "alert_store")}
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    with dg.build_asset_context(partition_key=today, resources=resources, instance=instance) as context:
        config = BaselineConfig(estimator=Settings.from_env().estimator)  # the daily job's
        learned = built.get_assets_def("task_duration_baselines")(context, config).value
    return built, learned.set_index("task_type")


def test_a_step_running_past_its_own_limit_is_flagged_with_its_run(monkeypatch, tmp_path, instance):
    built, learned = five_refreshes_learned(monkeypatch, tmp_path, instance)
    # The instance's own step statistics: what each step of each run took.
    steps = pd.DataFrame(
        [
            (f"refresh/{s.step_key}", s.end_time - s.start_time)
            for record in instance.get_run_records()
            for s in instance.get_run_step_stats(record.dagster_run.run_id)
        ],
        columns=["task_type", "seconds"],
    ).groupby("task_type")["seconds"]
    # Each asset too, from its steps in every job that materializes it (here one job).
    assert set(learned.index) == {
        "refresh", "refresh/customers", "refresh/orders", "asset:customers", "asset:orders"
    }  # fmt: skip
    assert learned["n_runs"].tolist() == [5] * 5 and learned["has_limit"].all()
    assert learned.loc["asset:orders", "mean_s"] == pytest.approx(learned.loc["refresh/orders", "mean_s"])
    assert learned.loc[["refresh/customers", "refresh/orders"], "mean_s"].to_dict() == pytest.approx(
        steps.mean().to_dict()
    )
    assert 0.3 <= learned.loc["refresh/orders", "mean_s"] < 1.3
    assert learned.loc["refresh", "mean_s"] > learned.loc["refresh/orders", "mean_s"]

    # A sixth run's orders hangs: its step is flagged against the step's limit, customers (done) is not.
    limit = learned.loc["refresh/orders", "upper_limit_s"]
    with orders_hanging_past(instance, limit):
        context = dg.build_sensor_context(instance=instance, resources=built.resources)
        build_long_running_tasks_sensor()(context)
        with dg.build_resources({"alert_store": built.resources["alert_store"]}) as store:
            alerts = store.alert_store.alerts()
        run_id = next(
            r.dagster_run.run_id
            for r in instance.get_run_records()
            if r.dagster_run.status == dg.DagsterRunStatus.STARTED
        )
        flagged = dict(zip(alerts["task_type"], alerts["run_id"], strict=True))
        assert flagged["refresh/orders"] == f"{run_id}/orders"
        assert "refresh/customers" not in flagged
        assert set(flagged) <= {"refresh", "refresh/orders"}  # the run itself, once past the job's limit
        orders_alert = alerts[alerts["task_type"] == "refresh/orders"].iloc[0]
        assert orders_alert["elapsed_s"] > limit == pytest.approx(orders_alert["upper_limit_s"])
        # Its fields apart, the asset named from the run's plan, and a link to the run in the UI.
        fields = ["dagster_job", "dagster_step", "dagster_asset", "dagster_run_id", "link"]
        assert orders_alert[fields].tolist() == [
            "refresh", "orders", "orders", run_id, f"http://dagster.example.com:3000/runs/{run_id}"
        ]  # fmt: skip
        assert alert_text(orders_alert.to_dict()).startswith(
            f"Step 'orders' (asset 'orders') of job 'refresh' (run '{run_id}') has been running for "
        )
        payload = alert_payload(orders_alert.to_dict())
        expected = dict(zip(fields, orders_alert[fields], strict=True))
        assert {name: payload[name] for name in fields} == expected
        assert payload["dag_id"] is None


def started_step(instance: dg.DagsterInstance, step_key: str):
    """The step `step_key` in progress in a started run, with its run id (None while there is none)."""
    for record in instance.get_run_records():
        if record.dagster_run.status == dg.DagsterRunStatus.STARTED:
            for stats in instance.get_run_step_stats(record.dagster_run.run_id):
                if stats.step_key == step_key and stats.end_time is None:
                    return record.dagster_run.run_id, stats
    return None


@contextmanager
def orders_hanging_past(instance: dg.DagsterInstance, limit_s: float, job: dg.JobDefinition = refresh):
    """A run of `job` whose orders step hangs: entered once the step has run a second past `limit_s`,
    with its run id; on leaving, the step is let go and the run ends."""
    RELEASE.clear()
    hung = threading.Thread(target=run_refresh, args=(instance, job), kwargs={"hang": True})
    hung.start()
    try:

        def past_the_limit() -> bool:
            found = started_step(instance, "orders")
            return found is not None and time.time() - found[1].start_time > limit_s + 1

        assert until(past_the_limit, patience_s=60)
        yield started_step(instance, "orders")[0]
    finally:
        RELEASE.set()
        hung.join(60)


def test_a_step_new_to_its_job_borrows_the_limit_of_the_asset_it_materializes(
    monkeypatch, tmp_path, instance
):
    built, learned = five_refreshes_learned(monkeypatch, tmp_path, instance)
    asset_limit = learned.loc["asset:orders", "upper_limit_s"]
    assert "rebuild/orders" not in learned.index
    # The new job's first run hangs in orders: its step has no limit of its own, its asset has one.
    with orders_hanging_past(instance, asset_limit, rebuild) as run_id:
        context = dg.build_sensor_context(instance=instance, resources=built.resources)
        build_long_running_tasks_sensor()(context)
        with dg.build_resources({"alert_store": built.resources["alert_store"]}) as store:
            alerts = store.alert_store.alerts()
        # The job itself, new, has no limit: only its step is flagged, against the asset's.
        assert alerts[["task_type", "run_id", "limit_from"]].values.tolist() == [
            ["rebuild/orders", f"{run_id}/orders", "asset:orders"]
        ]
        alert = alerts.to_dict(orient="records")[0]
        assert alert["upper_limit_s"] == pytest.approx(asset_limit)
        assert alert["n_runs"] == 5
        assert "over 5 successful runs of 'asset:orders', its own limit not yet learned)" in alert_text(alert)
        assert alert_payload(alert)["limit_from"] == "asset:orders"


def test_a_watched_asset_carries_a_runtime_check_that_fails_while_its_step_runs_over(
    monkeypatch, tmp_path, instance
):
    _, learned = five_refreshes_learned(monkeypatch, tmp_path, instance)
    # The code location reloaded once the limits are learned: each asset with a limit of its own gets
    # the check, defined in faultline's location, targeting the asset of the shop's.
    built = build_definitions(Settings.from_env())
    check_keys = built.get_repository_def().asset_graph.asset_check_keys
    watched = {key.asset_key.to_user_string() for key in check_keys if key.name == WATCHED_ASSET_CHECK}
    assert watched == {"customers", "orders"}
    orders_check = dg.AssetCheckKey(dg.AssetKey("orders"), WATCHED_ASSET_CHECK)
    sensor = next(s for s in built.sensors if s.name == "long_running_tasks")

    with orders_hanging_past(instance, learned.loc["refresh/orders", "upper_limit_s"]) as run_id:
        context = dg.build_sensor_context(instance=instance, resources=built.resources)
        result = sensor(context)
        evaluations = {
            event.asset_key.to_user_string(): event
            for event in result.asset_events
            if isinstance(event, dg.AssetCheckEvaluation) and event.check_name == WATCHED_ASSET_CHECK
        }
        # customers is done: not evaluated. orders fails, naming its step and run.
        assert set(evaluations) == {"orders"}
        failed = evaluations["orders"]
        assert not failed.passed and failed.severity == dg.AssetCheckSeverity.WARN
        assert failed.description.startswith(
            f"1 of 1 steps materializing it over their limit: 'refresh/orders' run {run_id}/orders "
        )
        assert failed.metadata["over_limit"].value == 1
        assert [row.data["run_id"] for row in failed.metadata["steps"].value.records] == [f"{run_id}/orders"]
        assert json.loads(result.cursor) == ["orders"]
        # The instance takes the evaluation as the daemon hands it over: the check's latest result.
        instance.report_runless_asset_event(failed)
        latest = instance.event_log_storage.get_latest_asset_check_execution_by_key([orders_check])
        assert latest[orders_check].status == AssetCheckExecutionRecordStatus.FAILED

        # Executed from the UI (here a job of the check alone): it finds the same, and alerts nothing.
        with dg.build_resources({"alert_store": built.resources["alert_store"]}) as store:
            n_alerts = len(store.alert_store.alerts())
        watch = dg.Definitions(
            asset_checks=[next(c for c in built.asset_checks if orders_check in c.check_keys)],
            jobs=[dg.define_asset_job("watch", selection=dg.AssetSelection.checks(orders_check))],
            resources=built.resources,
        )
        executed = watch.resolve_job_def("watch").execute_in_process(instance=instance)
        [evaluation] = executed.get_asset_check_evaluations()
        assert evaluation.asset_check_key == orders_check and not evaluation.passed
        with dg.build_resources({"alert_store": built.resources["alert_store"]}) as store:
            assert len(store.alert_store.alerts()) == n_alerts
    # The step ended: the next tick says orders passes again, once, and then leaves it alone.
    assert until(lambda: started_step(instance, "orders") is None, patience_s=60)
    after = sensor(
        dg.build_sensor_context(instance=instance, resources=built.resources, cursor=result.cursor)
    )
    [passed] = [e for e in after.asset_events if getattr(e, "check_name", None) == WATCHED_ASSET_CHECK]
    assert passed.asset_key == dg.AssetKey("orders") and passed.passed
    assert passed.description == "No step materializing it is running."
    assert json.loads(after.cursor) == []
    later = sensor(dg.build_sensor_context(instance=instance, resources=built.resources, cursor=after.cursor))
    assert not [e for e in later.asset_events if getattr(e, "check_name", None) == WATCHED_ASSET_CHECK]


def test_the_runtime_check_of_faultlines_location_shows_on_an_asset_of_another_location(tmp_path, instance):
    """The UI's asset graph is the workspace's: the check, defined in faultline's code location, sits
    on `orders`, an asset of the shop's, as one of its checks."""
    root = Path(__file__).resolve().parents[1]
    (tmp_path / "shop.py").write_text(
        "import dagster as dg\n\n@dg.asset\ndef orders():\n    return 1\n\n"
        "defs = dg.Definitions(assets=[orders])\n"
    )
    (tmp_path / "watcher.py").write_text(
        "import dagster as dg\n"
        "from assets.task_durations import watched_asset_checks\n"
        "from resources.alert_store import AlertStore\n"
        "from resources.dagster_steps import DagsterRunsAndStepsWorkflowService\n\n"
        "defs = dg.Definitions(\n"
        "    asset_checks=watched_asset_checks(['orders']),\n"
        f"    resources={{'workflow': DagsterRunsAndStepsWorkflowService(), 'alert_store': AlertStore(url="
        f"'sqlite:///{tmp_path / 'faultline.db'}')}},\n"
        ")\n"
    )
    (tmp_path / "workspace.yaml").write_text(
        "load_from:\n"
        f"  - python_file: {{relative_path: shop.py, location_name: shop,\n"
        f"                   working_directory: {tmp_path}}}\n"
        f"  - python_file: {{relative_path: watcher.py, location_name: faultline,\n"
        f"                   working_directory: {root}}}\n"
    )
    target = WorkspaceFileTarget(paths=[str(tmp_path / "workspace.yaml")])
    with WorkspaceProcessContext(instance, target) as workspace:
        request = workspace.create_request_context()
        errors = {name: entry.load_error for name, entry in request.get_code_location_entries().items()}
        assert errors == {"shop": None, "faultline": None}
        graph = request.asset_graph
        assert graph.get(dg.AssetKey("orders")).is_materializable  # the shop's asset, not a stub
        assert graph.get_check_keys_for_assets({dg.AssetKey("orders")}) == {
            dg.AssetCheckKey(dg.AssetKey("orders"), WATCHED_ASSET_CHECK)
        }


def test_only_assets_with_a_limit_not_faultlines_own_and_named_as_dagster_allows_are_watched():
    limits = pd.DataFrame(
        {
            "task_type": ["asset:orders", "asset:new", "asset:a b", "asset:", "refresh", "asset:p-x/a.b",
                          "asset:error_clusters", "asset:a:b"],
            "has_limit": [True, False, True, True, True, True, True, True],
        }
    )  # fmt: skip
    assert watched_asset_keys(limits, own={"error_clusters"}) == ["orders", "p-x/a.b"]
