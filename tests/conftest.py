"""Shared fixtures: generated stores in temporary folders, and the resources that read them."""

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from faultline.demo_data.deployment_events import generate_deployment_batches
from resources.event_store import DeploymentEventStore
from resources.report_store import ReportStore

DEMO_END = datetime(2026, 11, 22, tzinfo=UTC)
DEMO_DAY = "2026-11-21"


def seeded_event_store(folder: Path, rows: list[dict]) -> DeploymentEventStore:
    store = DeploymentEventStore(url=f"sqlite:///{folder / 'events.db'}")
    store.create_table()
    store.write_batches(rows)
    return store


@pytest.fixture
def instance(tmp_path: Path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as test_instance:
        yield test_instance


@pytest.fixture
def report_store(tmp_path: Path) -> ReportStore:
    return ReportStore(directory=str(tmp_path / "reports"))


@pytest.fixture(scope="session")
def demo_rows() -> list[dict]:
    """The demo's full store: 14 days, 20,000 error events, as `make demo` seeds it."""
    return generate_deployment_batches(end=DEMO_END)
