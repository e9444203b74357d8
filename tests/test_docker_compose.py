"""docker-compose.yml: the four services, PostgreSQL's healthcheck, the UI on loopback, no secrets."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_the_stack_has_postgres_the_code_server_the_webserver_and_the_daemon():
    assert set(SERVICES) == {"postgres", "faultline_code", "dagster_webserver", "dagster_daemon"}
    assert SERVICES["faultline_code"]["command"][:3] == ["dagster", "code-server", "start"]
    assert SERVICES["dagster_webserver"]["command"][0] == "dagster-webserver"
    assert SERVICES["dagster_daemon"]["command"][:2] == ["dagster-daemon", "run"]


def test_postgres_has_a_healthcheck_the_dagster_services_wait_for():
    healthcheck = SERVICES["postgres"]["healthcheck"]
    assert "pg_isready" in " ".join(healthcheck["test"])
    for name in ("faultline_code", "dagster_webserver", "dagster_daemon"):
        assert SERVICES[name]["depends_on"]["postgres"] == {"condition": "service_healthy"}


def test_the_webserver_is_published_on_loopback_by_default():
    (binding,) = SERVICES["dagster_webserver"]["ports"]
    assert binding.startswith("${DAGSTER_WEBSERVER_BIND:-127.0.0.1}:")
    assert all("ports" not in SERVICES[name] for name in ("postgres", "faultline_code", "dagster_daemon"))


def test_the_retry_and_interval_settings_reach_the_services_and_default_when_unset():
    environment = COMPOSE["x-faultline-environment"]
    for name in ("FAULTLINE_SOURCE_RETRIES", "FAULTLINE_SOURCE_RETRY_DELAY_S", "FAULTLINE_SENSOR_INTERVAL_S"):
        assert environment[name] == f"${{{name}:-}}"


def test_faultline_stores_have_a_database_of_their_own():
    environment = COMPOSE["x-faultline-environment"]
    assert environment["FAULTLINE_DB_URL"].endswith("/${FAULTLINE_POSTGRES_DB:-faultline}")
    assert environment["DAGSTER_POSTGRES_DB"] == "${DAGSTER_POSTGRES_DB:-dagster}"
    assert "./deploy/postgres:/docker-entrypoint-initdb.d:ro" in SERVICES["postgres"]["volumes"]


def test_runs_share_the_storage_volume_and_no_secret_is_committed():
    for name in ("faultline_code", "dagster_webserver", "dagster_daemon"):
        assert "dagster_storage:/opt/dagster/storage" in SERVICES[name]["volumes"]
    assert "${POSTGRES_PASSWORD}" in SERVICES["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert ".env\n" in (REPO / ".gitignore").read_text()
    assert (
        not (REPO / ".env").exists()
        or ".env"
        not in subprocess.run(["git", "ls-files", ".env"], cwd=REPO, capture_output=True, text=True).stdout
    )


@pytest.mark.skipif(
    shutil.which("docker-compose") is None, reason="needs docker-compose (apt-get install docker-compose)"
)
def test_docker_compose_validates_the_file():
    for extra in ([], ["--env-file", ".env.example"]):
        result = subprocess.run(
            ["docker-compose", *extra, "config", "-q"], cwd=REPO, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
