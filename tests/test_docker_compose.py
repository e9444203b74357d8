"""docker-compose.yml and the image: the four services, PostgreSQL's healthcheck, the UI on loopback,
each service with only the settings it needs, no secret committed or put in a URL, no root."""

import re
import shutil
import subprocess
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from assets.settings import Settings

REPO = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
CODE_SERVER = SERVICES["faultline_code"]["environment"]
# Secrets and faultline's stores: the code server's alone (it evaluates the sensor and runs the runs).
CODE_SERVER_ONLY = (
    "FAULTLINE_DB_URL",
    "PGPASSWORD",
    "FAULTLINE_EVENTS_DB_URL",
    "FAULTLINE_WORKFLOW_DB_URL",
    "FAULTLINE_ALERTS_DB_URL",
    "FAULTLINE_SLACK_TOKEN",
    "FAULTLINE_ALERT_WEBHOOK_URL",
)
DOCKER_COMPOSE = pytest.mark.skipif(
    shutil.which("docker-compose") is None, reason="needs docker-compose (apt-get install docker-compose)"
)


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


def test_the_retry_and_interval_settings_reach_the_code_server_and_default_when_unset():
    for name in ("FAULTLINE_SOURCE_RETRIES", "FAULTLINE_SOURCE_RETRY_DELAY_S", "FAULTLINE_SENSOR_INTERVAL_S"):
        assert CODE_SERVER[name] == f"${{{name}:-}}"


def test_every_faultline_setting_can_reach_the_code_server():
    # The demo's data folder and start date are the only ones a deployment has no use for.
    names = {setting.metadata["env"] for setting in fields(Settings)} - {"FAULTLINE_START_DATE"}
    assert names - set(CODE_SERVER) == set()


def test_the_sources_names_and_the_halves_reach_the_code_server_empty_unless_set():
    names = [n for n in CODE_SERVER if n.startswith(("FAULTLINE_WORKFLOW_", "FAULTLINE_AIRFLOW_"))]
    names += ["FAULTLINE_ERROR_CLUSTERS", "FAULTLINE_TASK_DURATIONS", "FAULTLINE_QUEUE_CHECKS"]
    assert len(names) == 20
    for name in set(names) - {"FAULTLINE_WORKFLOW_SOURCE"}:
        assert CODE_SERVER[name] == f"${{{name}:-}}", name
    assert Settings.from_env(dict.fromkeys(names, "")) == Settings()


def test_faultline_stores_have_a_database_of_their_own():
    assert CODE_SERVER["FAULTLINE_DB_URL"].endswith("/${FAULTLINE_POSTGRES_DB:-faultline}")
    assert CODE_SERVER["DAGSTER_POSTGRES_DB"] == "${DAGSTER_POSTGRES_DB:-dagster}"
    assert "./deploy/postgres:/docker-entrypoint-initdb.d:ro" in SERVICES["postgres"]["volumes"]


def test_the_webserver_and_the_daemon_get_dagsters_storage_and_no_secret_of_faultline():
    for name in ("dagster_webserver", "dagster_daemon"):
        environment = SERVICES[name]["environment"]
        assert not set(CODE_SERVER_ONLY) & set(environment), name
        assert not [key for key in environment if key.startswith("FAULTLINE_") and "CODE_SERVER" not in key]
        assert environment["DAGSTER_POSTGRES_PASSWORD"] == "${POSTGRES_PASSWORD}"
        assert environment["FAULTLINE_CODE_SERVER_HOST"] == "faultline_code"
        assert environment == COMPOSE["x-dagster-environment"]
    assert set(CODE_SERVER) >= set(CODE_SERVER_ONLY) | set(COMPOSE["x-dagster-environment"])


def strings(node: object) -> list[str]:
    if isinstance(node, dict):
        return [text for value in node.values() for text in strings(value)]
    if isinstance(node, list):
        return [text for value in node for text in strings(value)]
    return [node] if isinstance(node, str) else []


def test_no_url_holds_the_password_which_goes_to_libpq_and_dagster_as_it_is():
    urls = [text for text in strings(COMPOSE) if "://" in text]
    assert urls and not [url for url in urls if "POSTGRES_PASSWORD" in url]
    assert CODE_SERVER["FAULTLINE_DB_URL"].startswith(
        "postgresql+psycopg2://${POSTGRES_USER:-faultline}@postgres:"
    )
    assert CODE_SERVER["PGPASSWORD"] == "${POSTGRES_PASSWORD}"
    postgres_db = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())["storage"]["postgres"]
    assert postgres_db["postgres_db"]["password"] == {"env": "DAGSTER_POSTGRES_PASSWORD"}


@DOCKER_COMPOSE
def test_a_password_of_reserved_characters_reaches_the_services_unchanged(tmp_path: Path):
    password = "p@ss:w/rd?#x%20&y=1"
    (tmp_path / "env").write_text(f"POSTGRES_PASSWORD={password}\n")
    result = subprocess.run(
        ["docker-compose", "--env-file", str(tmp_path / "env"), "config"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    code_server = services["faultline_code"]["environment"]
    assert code_server["PGPASSWORD"] == code_server["DAGSTER_POSTGRES_PASSWORD"] == password
    assert code_server["FAULTLINE_DB_URL"] == "postgresql+psycopg2://faultline@postgres:5432/faultline"
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == password
    for name in ("dagster_webserver", "dagster_daemon"):
        assert services[name]["environment"]["DAGSTER_POSTGRES_PASSWORD"] == password
        assert "PGPASSWORD" not in services[name]["environment"]


def test_the_image_runs_as_a_user_other_than_root_that_owns_the_volumes():
    instructions = [
        line.split(maxsplit=1)
        for line in (REPO / "deploy" / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    users = [argument.strip() for keyword, argument in instructions if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.fullmatch(r"\d+:\d+", users[-1]), "by number, so a runtime can tell it is not root"
    # The image ends as that user, and the user owns the folders the volumes are mounted on.
    last_user = max(index for index, (keyword, _) in enumerate(instructions) if keyword == "USER")
    assert [keyword for keyword, _ in instructions[last_user:]] == ["USER"]
    chown = " ".join(
        argument for keyword, argument in instructions if keyword == "RUN" and "chown" in argument
    )
    for name in ("faultline_code", "dagster_webserver", "dagster_daemon"):
        for volume in SERVICES[name]["volumes"]:
            assert volume.split(":")[1] in chown, volume


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


@DOCKER_COMPOSE
def test_docker_compose_validates_the_file():
    for extra in ([], ["--env-file", ".env.example"]):
        result = subprocess.run(
            ["docker-compose", *extra, "config", "-q"], cwd=REPO, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
