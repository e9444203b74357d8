"""The demo writes only its own embedded store, whatever the environment names."""

import sqlite3
from pathlib import Path

import pytest

from dagster_project.demo import DEMO_MARKER_TABLE, demo_definitions
from resources.alert_store import AlertStore


def test_the_demo_never_writes_to_a_real_store_nor_alerts_a_real_sink(monkeypatch, tmp_path: Path, capsys):
    monkeypatch.setenv("FAULTLINE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FAULTLINE_EVENTS_DB_URL", "postgresql://prod@db/events")
    monkeypatch.setenv("FAULTLINE_WORKFLOW_DB_URL", "postgresql://prod@db/airflow")
    monkeypatch.setenv("FAULTLINE_WORKFLOW_SOURCE", "dagster")
    monkeypatch.setenv("FAULTLINE_ALERT_WEBHOOK_URL", "https://hooks.example.com/real")
    monkeypatch.setenv("FAULTLINE_SLACK_TOKEN", "xoxb-real")
    demo_definitions()  # a first demo: its store is marked as the demo's
    resources = demo_definitions().resources
    demo_store = f"sqlite:///{tmp_path / 'faultline.db'}"
    assert resources["event_store"].url == demo_store
    assert resources["workflow"].url == demo_store and resources["alert_store"].url == demo_store
    assert resources["alert_sinks"].sink_names() == []
    out = capsys.readouterr().out
    assert "FAULTLINE_EVENTS_DB_URL is set; the demo ignores it" in out
    assert "FAULTLINE_SLACK_TOKEN is set; the demo ignores it" in out


@pytest.mark.parametrize("content", [b"", b"not a database", None])
def test_the_demo_never_deletes_a_store_it_did_not_create(monkeypatch, tmp_path: Path, content):
    monkeypatch.setenv("FAULTLINE_DATA_DIR", str(tmp_path))
    store = tmp_path / "faultline.db"
    if content is None:  # a real store: faultline's own tables, written by the product
        AlertStore(url=f"sqlite:///{store}").alerts()
    else:
        store.write_bytes(content)
    before = store.read_bytes()
    with pytest.raises(SystemExit, match="holds data the demo did not create"):
        demo_definitions()
    assert store.read_bytes() == before


def test_the_demo_replaces_its_own_store(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("FAULTLINE_DATA_DIR", str(tmp_path))
    demo_definitions()
    store = tmp_path / "faultline.db"
    AlertStore(url=f"sqlite:///{store}").alerts()  # the demo writes its tables into it
    demo_definitions()
    with sqlite3.connect(store) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {DEMO_MARKER_TABLE}
