"""A day's chain as plain functions: the defaults of the assets' Config, the result of the assets."""

import dataclasses
import inspect
from pathlib import Path

import dagster as dg
import pandas as pd
from conftest import DEMO_DAY, DEMO_END, seeded_event_store

from assets import error_clusters
from assets.error_clusters import CleaningConfig, DBSCANConfig, Doc2VecConfig, DumpConfig, FlattenConfig
from faultline.demo_data.deployment_events import generate_deployment_batches
from faultline.pipeline import (
    DEFAULT_ROWS_PER_PART,
    DaySettings,
    clean_corpus,
    cluster_corpus,
    flatten_dump,
    run_day,
    vectorize_corpus,
    write_parts,
)
from resources.error_sources import ErrorEventFormat
from resources.event_store import DUMP_COLUMNS
from resources.part_store import PartStore
from resources.report_store import ReportStore


def test_the_chains_settings_default_to_the_assets_config():
    configs = [FlattenConfig(), CleaningConfig(), Doc2VecConfig(), DBSCANConfig()]
    settings = DaySettings()
    # A Config field left unset takes the deployment's format (the error_format resource), whose
    # defaults are the chain's; every_event_is_error is the format's error_states of None.
    deployment = ErrorEventFormat()
    deployment_values = {**deployment.model_dump(), "every_event_is_error": deployment.error_states is None}
    for setting in dataclasses.fields(DaySettings):
        holders = [config for config in configs if setting.name in type(config).model_fields]
        assert holders, f"no Config of the assets has {setting.name}"
        for config in holders:
            value = getattr(config, setting.name)
            if value is None:
                value = deployment_values[setting.name]
            assert (tuple(value) if isinstance(value, list) else value) == getattr(settings, setting.name)
    assert DumpConfig().rows_per_part == DEFAULT_ROWS_PER_PART


def test_each_steps_defaults_are_the_chains():
    settings = dataclasses.asdict(DaySettings())
    for step in (flatten_dump, clean_corpus, vectorize_corpus, cluster_corpus):
        for name, parameter in inspect.signature(step).parameters.items():
            if parameter.default is not inspect.Parameter.empty:
                assert parameter.default == settings[name], f"{step.__name__}({name}=...)"


def test_a_table_is_written_in_parts_of_the_rows_asked_for(tmp_path: Path):
    frame = pd.DataFrame({"id": range(7), "payload": list("abcdefg")})
    parts = write_parts(frame, tmp_path / "parts", rows_per_part=3)
    assert parts.row_counts == (3, 3, 1)
    pd.testing.assert_frame_equal(parts.to_frame(), frame)


def test_run_day_gives_what_the_assets_materialize(tmp_path: Path, instance):
    rows = generate_deployment_batches(end=DEMO_END, days=1, n_error_events=300, seed=5)
    reports = ReportStore(directory=str(tmp_path / "reports"))
    result = dg.materialize(
        dg.load_assets_from_modules([error_clusters]),
        instance=instance,
        partition_key=DEMO_DAY,
        resources={
            "event_store": seeded_event_store(tmp_path, rows),
            "error_format": ErrorEventFormat(),
            "report_store": reports,
            "part_store": PartStore(directory=str(tmp_path / "parts")),
        },
        run_config={"ops": {"deployment_events_dump": {"config": {"rows_per_part": 40}}}},
    )
    dump = write_parts(pd.DataFrame(rows, columns=DUMP_COLUMNS), tmp_path / "dump", rows_per_part=40)
    day = run_day(dump, tmp_path / "flattened", DaySettings(workers=2))

    assert dump.n_parts == result.asset_value("deployment_events_dump").n_parts > 1
    pd.testing.assert_frame_equal(day.events.to_frame(), result.asset_value("flattened_events").to_frame())
    pd.testing.assert_frame_equal(day.clustered.events, result.asset_value("error_clusters").events)
    assert day.clustered.events["cluster_id"].nunique() > 5
    pd.testing.assert_frame_equal(day.report.groups, result.asset_value("error_cluster_report").groups)
