"""The demo writes only its own embedded store, whatever the environment names."""

from pathlib import Path

from dagster_project.demo import demo_definitions


def test_the_demo_never_writes_to_a_real_store_nor_alerts_a_real_sink(monkeypatch, tmp_path: Path, capsys):
    monkeypatch.setenv("FAULTLINE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FAULTLINE_EVENTS_DB_URL", "postgresql://prod@db/events")
    monkeypatch.setenv("FAULTLINE_WORKFLOW_DB_URL", "postgresql://prod@db/airflow")
    monkeypatch.setenv("FAULTLINE_WORKFLOW_SOURCE", "dagster")
    monkeypatch.setenv("FAULTLINE_ALERT_WEBHOOK_URL", "https://hooks.example.com/real")
    monkeypatch.setenv("FAULTLINE_SLACK_TOKEN", "xoxb-real")
    (tmp_path / "faultline.db").write_text("last demo's data")
    resources = demo_definitions().resources
    demo_store = f"sqlite:///{tmp_path / 'faultline.db'}"
    assert resources["event_store"].url == demo_store
    assert resources["workflow"].url == demo_store and resources["alert_store"].url == demo_store
    assert resources["alert_sinks"].sink_names() == []
    assert not (tmp_path / "faultline.db").exists()
    out = capsys.readouterr().out
    assert "FAULTLINE_EVENTS_DB_URL is set; the demo ignores it" in out
    assert "FAULTLINE_SLACK_TOKEN is set; the demo ignores it" in out
