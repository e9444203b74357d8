"""The demo writes only its own embedded store, whatever the environment names."""

import os
from pathlib import Path

from dagster_project.demo import _use_embedded_stores


def test_the_demo_never_writes_to_a_real_store_nor_alerts_a_real_sink(monkeypatch, tmp_path: Path, capsys):
    monkeypatch.setenv("FAULTLINE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FAULTLINE_EVENTS_DB_URL", "postgresql://prod@db/events")
    monkeypatch.setenv("FAULTLINE_WORKFLOW_DB_URL", "postgresql://prod@db/airflow")
    monkeypatch.setenv("FAULTLINE_WORKFLOW_SOURCE", "dagster")
    monkeypatch.setenv("FAULTLINE_ALERT_WEBHOOK_URL", "https://hooks.example.com/real")
    monkeypatch.setenv("FAULTLINE_SLACK_TOKEN", "xoxb-real")
    (tmp_path / "faultline.db").write_text("last demo's data")
    _use_embedded_stores()
    assert "FAULTLINE_EVENTS_DB_URL" not in os.environ and "FAULTLINE_WORKFLOW_DB_URL" not in os.environ
    assert "FAULTLINE_WORKFLOW_SOURCE" not in os.environ
    assert "FAULTLINE_ALERT_WEBHOOK_URL" not in os.environ and "FAULTLINE_SLACK_TOKEN" not in os.environ
    assert not (tmp_path / "faultline.db").exists()
    assert "FAULTLINE_EVENTS_DB_URL is set; the demo ignores it" in capsys.readouterr().out
