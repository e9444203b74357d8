"""FAULTLINE_WORKFLOW_SOURCE=dagster learns a limit for each job and each of its steps (an asset's
step too) from a real instance's runs, and flags a step running past its own limit (issue 15)."""

import threading
import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd
import pytest
from conftest import until

from assets.settings import Settings
from assets.task_durations import BaselineConfig
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
    RELEASE.clear()
    hung = threading.Thread(target=run_refresh, args=(instance,), kwargs={"hang": True})
    hung.start()
    try:
        limit = learned.loc["refresh/orders", "upper_limit_s"]

        def orders_past_its_limit() -> bool:
            started = [
                r for r in instance.get_run_records() if r.dagster_run.status == dg.DagsterRunStatus.STARTED
            ]
            stats = [s for r in started for s in instance.get_run_step_stats(r.dagster_run.run_id)]
            return any(
                s.step_key == "orders" and s.end_time is None and time.time() - s.start_time > limit + 1
                for s in stats
            )

        assert until(orders_past_its_limit, patience_s=60)
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
    finally:
        RELEASE.set()
        hung.join(60)


def started_step(instance: dg.DagsterInstance, step_key: str):
    """The step `step_key` in progress in a started run, with its run id (None while there is none)."""
    for record in instance.get_run_records():
        if record.dagster_run.status == dg.DagsterRunStatus.STARTED:
            for stats in instance.get_run_step_stats(record.dagster_run.run_id):
                if stats.step_key == step_key and stats.end_time is None:
                    return record.dagster_run.run_id, stats
    return None


def test_a_step_new_to_its_job_borrows_the_limit_of_the_asset_it_materializes(
    monkeypatch, tmp_path, instance
):
    built, learned = five_refreshes_learned(monkeypatch, tmp_path, instance)
    asset_limit = learned.loc["asset:orders", "upper_limit_s"]
    assert "rebuild/orders" not in learned.index
    # The new job's first run hangs in orders: its step has no limit of its own, its asset has one.
    RELEASE.clear()
    hung = threading.Thread(target=run_refresh, args=(instance, rebuild), kwargs={"hang": True})
    hung.start()
    try:

        def past_the_assets_limit() -> bool:
            found = started_step(instance, "orders")
            return found is not None and time.time() - found[1].start_time > asset_limit + 1

        assert until(past_the_assets_limit, patience_s=60)
        run_id = started_step(instance, "orders")[0]
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
    finally:
        RELEASE.set()
        hung.join(60)
