"""Secrets planted in the input reach no output: corpus, report, metadata, alerts, sinks, logs.

Every kind of secret the redaction knows, and a case of every class detect-secrets' plugins find,
is planted in error messages, scopes, extra fields, fields named like secrets, non-error events and
malformed rows of a demo day (among them payloads that are not JSON, as they are and with every
character written as a JSON escape), each also split in two by a line break; and in the task types
and run ids of the workflow. Both pipelines then run for real, and every file they leave (Dagster's
storage, event logs, run records, the report files), every alert the sinks receive, the alerts
table and all that was logged or printed are searched for every planted value, the halves of the
split ones, and a marker word every planted credential carries, so a secret cut in half is caught too.

Two places keep secrets by design and are not searched: `deployment_events_dump`, the day's rows
copied verbatim (redaction happens when they are flattened), and the limits table the sensor reads,
which holds task types as the workflow table beside it does, since running tasks are matched to
their limit by them.
"""

import json
import logging
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import DEMO_DAY, DEMO_END, FIXED_NOW, FIXED_TODAY, fixed_clock, seeded_event_store
from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.util.code_snippet import get_code_snippet

from assets import error_clusters
from assets.task_durations import task_duration_baselines
from dagster_project.sensors import build_long_running_tasks_sensor
from faultline.demo_data.deployment_events import frame_message, generate_deployment_batches
from faultline.redaction import SECRET_KINDS, redact_secrets
from resources.alert_sinks import AlertSinks
from resources.alert_store import AlertStore
from resources.error_sources import ErrorEventFormat
from resources.part_store import PartStore
from resources.report_store import ReportStore
from resources.workflow import SqlWorkflowService

# Every credential below carries this word (any case): a partial leak shows it even where the rest
# of the secret was cut or cleaned away. Addresses and hex keys cannot carry it; their values are
# searched whole.
MARKER = "quokka"
_RANDOM = "Xq7Lm2Vz9Rk4Tw8Jp1Nf6Hc3Gd5Sb0Ya"  # base62 that looks random


def sized(start: str, length: int, alphabet: str = _RANDOM) -> str:
    """`start`, then the characters of `alphabet` in turn, to `length` characters: a format's size."""
    return (start + alphabet * (length // len(alphabet) + 1))[:length]


def _pem(label: str) -> str:
    return f"-----BEGIN {label}-----\n{{}}\nQuokkaKeyBodyLine2\n-----END {label}-----"


# (kind, the secret value, a line of text that holds it the way logs and errors write it)
_PLANTED_IN: list[tuple[str, str, str]] = [
    # Formats of their own (detect-secrets' plugins and others)
    ("github_token", sized("ghp_QuokkaGithubToken", 40), "push rejected for {}"),
    ("github_token", sized("github_pat_11QUOKKA0_Quokka", 82), "token {} expired"),
    ("gitlab_token", "glpat-QuokkaGitlabToken012", "clone with {} denied"),
    ("slack_token", "xoxb-1234567890-QuokkaSlackToken", "slack notify {} failed"),
    (
        "webhook_url",
        "T0QUOKKA1/B0QUOKKA2/QuokkaWebhookSecret0123456",
        "POST https://hooks.slack.com/services/{} 404",
    ),
    (
        "webhook_url",
        "123456789012345678/QuokkaDiscordWebhook_Token-0123",
        "POST https://discord.com/api/webhooks/{}",
    ),
    ("aws_access_key", "AKIAQUOKKAAWSKEY0123", "aws {} AccessDenied"),
    ("google_api_key", sized("AIzaQuokkaGoogleApiKey", 39), "maps key {} over quota"),
    ("stripe_key", sized("sk_live_QuokkaStripeKey", 32), "stripe {} invalid"),
    ("openai_key", sized("sk-proj-QuokkaOpenAiKey", 56), "openai {} quota exceeded"),
    ("openai_key", sized("sk-QuokkaOpenAi", 23) + "T3BlbkFJ" + sized("QuokkaAgain", 20), "openai {} invalid"),
    (
        "sendgrid_key",
        sized("SG.QuokkaSendgrid", 25) + sized(".QuokkaSendgridSecret", 44),
        "sendgrid {} unauthorized",
    ),
    ("twilio_key", sized("SKquokkatwilio", 34, "abcdefghijklmnopqrstuvwxyz0123456789"), "twilio {} rejected"),
    ("mailchimp_key", sized("7e1d", 32, "0123456789abcdef") + "-us12", "mailchimp {} invalid"),
    ("npm_token", sized("npm_QuokkaNpmToken", 40), "npm publish with {} forbidden"),
    ("pypi_token", sized("pypi-AgEIcHlwaS5vcmcQuokkaPypiToken", 90), "twine upload with {} forbidden"),
    (
        "discord_token",
        sized("MTQuokkaDiscordBot", 25) + sized(".Gq", 7) + sized(".QuokkaDiscordSig", 28),
        "discord bot {} unauthorized",
    ),
    ("telegram_token", sized("123456789:QuokkaTelegramBot", 45), "telegram {} unauthorized"),
    ("square_token", sized("sq0csp-QuokkaSquareSecret", 50), "square oauth {} revoked"),
    ("artifactory_token", sized("AKCQuokkaArtifactory", 23), "artifactory {} denied"),
    ("api_token", sized("hf_QuokkaHuggingFace", 37), "hub download with {} forbidden"),
    ("jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJkZXBsb3kifQ.QuokkaJwtSignature0123", "jwt {} rejected"),
    ("private_key", "MIIEquokkaPrivateKeyBody0123456789", "key " + _pem("RSA PRIVATE KEY") + " unreadable"),
    ("private_key", "lQOYBGQuokkaPgpKeyBody0123", "import " + _pem("PGP PRIVATE KEY BLOCK")),
    ("private_key", "b3BlbnNzaC1rZXktdjEAQuokkaOpenSsh", _pem("OPENSSH PRIVATE KEY")),
    (
        "private_key",
        "AAAAQuokkaPuttyPrivateLine",
        "PuTTY-User-Key-File-2: ssh-rsa\nEncryption: none\nPrivate-Lines: 1\n{}\nPrivate-MAC: 8a9b0c",
    ),
    # Marked by their context
    ("url_credentials", "QuokkaUrlPassw0rd", "connect postgres://deployer:{}@db.internal:5432/app timed out"),
    ("url_credentials", "QuokkaRedisPassw0rd", "redis://:{}@cache.internal:6379/0 refused"),
    ("url_credentials", "QuokkaMysqlPassw0rd", "dsn app:{}@tcp(db.internal:3306)/shop failed"),
    ("url_credentials", "QuokkaOraclePw1", "jdbc:oracle:thin:scott/{}@//db.internal:1521/orcl refused"),
    ("url_credentials", "quokkacloudantapikeyefgh", "GET https://shop-acct:{}@shop-acct.cloudant.com/db"),
    ("bearer_token", "QuokkaBearerToken0123", "header Authorization: Bearer {} refused"),
    ("basic_auth", "QuokkaBasicCredential0=", "header Authorization: Basic {} refused"),
    ("auth_header", "QuokkaGithubAppToken0123", "curl -H 'Authorization: token {}' failed"),
    ("auth_header", 'username="ci", response="QuokkaDigest0123"', "Authorization: Digest {}"),
    ("cookie", "session=QuokkaSessionCookie0123; theme=dark", "request Cookie: {}"),
    ("assigned_secret", sized("QuokkaAwsSecretKey/", 40), 'aws_secret_access_key = "{}" invalid'),
    (
        "assigned_secret",
        sized("QuokkaAzureStorageKey", 86) + "==",
        "DefaultEndpointsProtocol=https;AccountName=shop;AccountKey={};EndpointSuffix=core.windows.net",
    ),
    (
        "assigned_secret",
        "Quokka%2BSasSignature0123%3D",
        "GET https://shop.blob.core.windows.net/c/x?sv=2022&sig={}&se=1",
    ),
    ("assigned_secret", "Quokka-Passw0rd!", "login failed: password={} for admin"),
    ("assigned_secret", "QuokkaDbPassw0rd", "env DB_PASSWORD={} is wrong"),
    ("assigned_secret", "quokka pass phrase", 'config password: "{}" rejected'),
    ("assigned_secret", "quokkaFirst quokkaSecond", "login failed: password={} host=db.internal"),
    ("assigned_secret", "QuokkaPassphrase one two", "gpg: passphrase={}"),
    ("assigned_secret", "QuokkaPrivateKeyValue 123", "settings private_key: {}"),
    ("assigned_secret", "quokka secret in json", '{{"client_secret": "{}", "id": 7}}'),
    ("assigned_secret", "sk_live_QuokkaApiKey0123", "api_key={} revoked"),
    ("assigned_secret", "QuokkaCliPassw0rd", "mysql --user=root --password {} shop"),
    ("assigned_secret", "QuokkaSqlPassw0rd", "ALTER USER app IDENTIFIED BY '{}'"),
    ("assigned_secret", sized("npm_QuokkaNpmAuth", 40), "//registry.npmjs.org/:_authToken={}"),
    ("assigned_secret", "quokkacloudantapikeyabcd", "cloudant_apikey={}"),
    ("assigned_secret", sized("QuokkaIbmCloudIamKey_", 44), "ibm_cloud_iam_apikey = {}"),
    ("assigned_secret", sized("5f2c", 48, "0123456789abcdef"), "ibm_cos_hmac_secret_access_key = {}"),
    ("assigned_secret", sized("quokka", 64, "abcdefghijklmnopqrstuvwxyz0123456789"), "softlayer_apikey = {}"),
    # Marked by their look alone
    ("high_entropy", sized("QuokkaR4nd", 40), 'unexpected value "{}" in response'),
    ("high_entropy", sized("3c9f", 40, "0123456789abcdef"), "signing with '{}' failed"),
    # Personal data
    ("email", "quokka.ops@acme-corp.io", "notified {} of the failure"),
    ("ip_address", "10.213.47.91", "connection to {}:5432 refused"),
    ("ip_address", "203.0.113.74", "request from {} blocked"),
    ("ip_address", "2001:db8:4a7::91", "connection to [{}]:5432 refused"),
    ("ip_address", "2001:0db8:85a3:0000:0000:8a2e:0370:7334", "route to {} lost"),
]
PLANTED = [(kind, secret, template.format(secret)) for kind, secret, template in _PLANTED_IN]
SECRETS = [secret for _, secret, _ in PLANTED]
TEXTS = [text for _, _, text in PLANTED]


def split_in_two(secret: str, text: str) -> str:
    """`text` with its secret broken in the middle by a line break, as a terminal wraps a long line."""
    half = len(secret) // 2
    return text.replace(secret, secret[:half] + "\n" + secret[half:], 1)


def json_escaped(text: str) -> str:
    """Every character of `text` as a JSON escape: `\\u0070assword` for `password`."""
    return "".join(f"\\u{ord(char):04x}" for char in text)


SPLIT_TEXTS = [split_in_two(secret, text) for _, secret, text in PLANTED]
# A secret split in two shows in two pieces: each is searched (the short ones could be any text).
HALVES = [piece for secret in SECRETS for piece in (secret[: len(secret) // 2], secret[len(secret) // 2 :])]
SEARCHED = SECRETS + [half for half in HALVES if len(half) >= 8]
# Where an error event holds each planted secret whole, under a name that says what it is.
SECRET_FIELD_NAMES = (
    "DB_PASSWORD", "API_KEY", "pass", "auth", "credentials", "private_key", "passphrase", "sig", "cookie",
    "session", "x-api-key", "clientSecret",
)  # fmt: skip


def leaks(where: str, content: str | bytes) -> list[str]:
    """`where: secret` for each planted secret (or the marker) found in `content`."""
    if isinstance(content, bytes):
        content = content.decode("utf-8", "replace")
    lowered = content.lower()
    found = [f"{where}: {secret}" for secret in SEARCHED if secret.lower() in lowered]
    return found + ([f"{where}: the marker {MARKER!r}"] if MARKER in lowered else [])


def leaks_in_files(folder: Path, skip: tuple[str, ...] = ()) -> list[str]:
    """Leaks in every file under `folder` (SQLite databases, pickles, reports), raw bytes searched."""
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if not any(relative.startswith(prefix) for prefix in skip):
            found += leaks(relative, path.read_bytes())
    return found


def leaks_in_event_logs(instance: dg.DagsterInstance) -> list[str]:
    found = []
    for record in instance.get_run_records():
        for entry in instance.all_logs(record.dagster_run.run_id):
            found += leaks(f"event log of run {record.dagster_run.run_id[:8]}", dg.serialize_value(entry))
    return found


def leaks_in_output(capfd, caplog) -> tuple[list[str], str]:
    out, err = capfd.readouterr()
    logged = "\n".join(f"{r.name} {r.levelname} {r.getMessage()}" for r in caplog.records)
    return leaks("stdout", out) + leaks("stderr", err) + leaks("python logging", logged), out + err + logged


@pytest.mark.parametrize(
    ("kind", "secret", "text"), PLANTED, ids=[f"{kind}-{n}" for n, (kind, _, _) in enumerate(PLANTED)]
)
def test_each_planted_secret_is_replaced_by_its_kind(kind, secret, text):
    redacted = redact_secrets(text)
    assert secret not in redacted and MARKER not in redacted.lower()
    assert f"<{kind}>" in redacted


def test_every_kind_of_secret_is_planted():
    assert {kind for kind, _, _ in PLANTED} == SECRET_KINDS


@pytest.mark.parametrize("text", SPLIT_TEXTS, ids=[f"{kind}-{n}" for n, (kind, _, _) in enumerate(PLANTED)])
def test_each_planted_secret_split_by_a_line_break_is_redacted_on_both_sides(text):
    assert leaks("redacted", redact_secrets(text)) == []


# detect-secrets' plugins, as the scanner holds them, run on each line as a log file's.
_DETECTORS = [detector() for detector in get_mapping_from_secret_type_to_class().values()]


def detect_secrets_findings(text: str) -> set[tuple[str, str]]:
    found = set()
    lines = text.split("\n")
    for number, line in enumerate(lines, start=1):
        context = get_code_snippet(lines, number)
        for detector in _DETECTORS:
            found |= {
                (s.type, s.secret_value) for s in detector.analyze_line("error.log", line, number, context)
            }
    return found


def test_the_corpus_holds_a_case_of_every_class_detect_secrets_finds():
    found_types = {kind for text in TEXTS for kind, _ in detect_secrets_findings(text)}
    assert found_types == {detector.secret_type for detector in _DETECTORS}


@pytest.mark.parametrize("text", TEXTS, ids=[f"{kind}-{n}" for n, (kind, _, _) in enumerate(PLANTED)])
def test_detect_secrets_finds_nothing_in_the_corpus_once_redacted(text):
    left = {
        (kind, value)
        for kind, value in detect_secrets_findings(redact_secrets(text))
        if not value.startswith("<") and kind != "Private Key"  # a placeholder; the kept BEGIN line
    }
    assert left == set()


def secret_bearing_rows(created_at: pd.Timestamp, first_id: int) -> list[dict]:
    """Batches and broken rows holding every planted secret, in every place a row can hold one, whole
    and split by a line break."""

    def error(message: str, **fields) -> dict:
        return {"scope": "APPLICATION", "state": "DEPLOYMENT_ERROR", "message": message, **fields}

    batches = [
        # Each secret in six framed messages that only differ by it: enough to form a cluster whose
        # examples the report shows; and in the hint, which the report also shows.
        [
            error(frame_message(f"exec-{n}", f"Application 'shop' with id 'zq{n}'", f"failed: {text}", text))
            for n in range(6)
        ]
        for text in TEXTS + SPLIT_TEXTS
    ]
    batches.append(
        [
            *(error("crashed", root_cause=text, execution_id=f"e-{n}") for n, text in enumerate(TEXTS)),
            *(error("crashed", root_cause=text) for text in SPLIT_TEXTS),
            *(error("crashed", **dict.fromkeys(SECRET_FIELD_NAMES, secret)) for secret in SECRETS),
            error("crashed", context={"headers": TEXTS, "nested": [{"note": text} for text in SPLIT_TEXTS]}),
            *({"scope": f"APP {text}", "state": "BUILD_ERROR", "message": "build failed"} for text in TEXTS),
            *(
                {"scope": f"APP {text}", "state": "BUILD_ERROR", "message": "build failed"}
                for text in SPLIT_TEXTS
            ),
            *({"scope": "APP", "state": "DEPLOYING", "message": text} for text in TEXTS),
            *({"scope": "APP", "state": f"DEPLOYING {text}", "message": "ok"} for text in TEXTS),
        ]
    )
    broken = []
    for text in TEXTS + SPLIT_TEXTS:
        broken += [
            "{not json " + text,
            "{not json " + json_escaped(text),
            json.dumps({"events": [error(text)]}),
            json.dumps([{"scope": "APPLICATION", "state": "DEPLOYMENT_ERROR", "detail": text}]),
            json.dumps([error([text])]),
            json.dumps([text]),
            json.dumps([error(text + " " + "x" * 200_000)]),
            ("[" + json.dumps(error(text)) + "\xff").encode("latin-1", "replace") + b"\xff\xfe",
        ]
    payloads = [json.dumps(batch) for batch in batches] + broken
    return [
        {"id": first_id + n, "created_at": created_at.to_pydatetime(), "payload": payload}
        for n, payload in enumerate(payloads)
    ]


def test_secrets_in_the_days_events_reach_no_corpus_report_metadata_storage_or_log(
    tmp_path: Path, capfd, caplog
):
    caplog.set_level(logging.DEBUG)
    demo = generate_deployment_batches(end=DEMO_END, days=1, n_error_events=200, seed=3)
    planted = secret_bearing_rows(pd.Timestamp(DEMO_END) - pd.Timedelta(hours=2), first_id=100_000)
    event_store = seeded_event_store(tmp_path, demo + planted)  # the source: outside the folders searched
    home, reports = tmp_path / "dagster_home", tmp_path / "reports"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        result = dg.materialize(
            dg.load_assets_from_modules([error_clusters]),
            instance=instance,
            partition_key=DEMO_DAY,
            resources={
                "event_store": event_store,
                "error_format": ErrorEventFormat(),
                "report_store": ReportStore(directory=str(reports)),
                "part_store": PartStore(),
            },
        )
        assert result.success
        event_log_leaks = leaks_in_event_logs(instance)

    # The planted secrets went through the pipeline: redacted where they were, not dropped.
    events = result.asset_value("flattened_events").to_frame()
    messages = "\n".join(events["message"])
    assert {kind for kind in SECRET_KINDS if f"<{kind}>" not in messages} == set()
    assert "<assigned_secret>" in "\n".join(events["extra"]) and "<email>" in "\n".join(events["scope"])
    quarantine = result.asset_value("event_quarantine")
    assert set(quarantine["reason"]) >= {
        "payload_not_json", "payload_not_a_list", "event_missing_field", "event_field_not_text",
        "event_not_an_object", "message_too_long", "payload_not_utf8",
    }  # fmt: skip
    assert "<bearer_token>" in "\n".join(quarantine["excerpt"])
    report = json.loads((reports / f"error_clusters_{DEMO_DAY}.json").read_text())
    assert "<url_credentials>" in json.dumps(report["groups"])

    corpus = result.asset_value("cleaned_corpus")
    tables = {
        "flattened_events": events,
        "event_quarantine": quarantine,
        "cleaned_corpus events": corpus.events,
        "cleaned_corpus variants": corpus.variants,
        "cleaned_corpus hints": corpus.hints,
        "error_clusters events": result.asset_value("error_clusters").events,
        "error_clusters report rows": result.asset_value("error_clusters").report_rows,
    }
    found = []
    for name, table in tables.items():
        found += leaks(name, table.astype(str).to_csv())
    report_groups = result.asset_value("error_cluster_report").groups
    found += leaks("error_cluster_report", report_groups.astype(str).to_csv())
    for event in result.get_asset_materialization_events():
        where = f"metadata of {event.asset_key.to_user_string()}"
        found += leaks(where, dg.serialize_value(event.materialization))
    found += event_log_leaks
    found += leaks_in_files(reports)
    found += leaks_in_files(home, skip=("storage/deployment_events_dump/",))
    logged_leaks, logged = leaks_in_output(capfd, caplog)
    assert "STEP_SUCCESS" in logged or "materialized" in logged.lower()  # the capture saw Dagster's log
    assert found + logged_leaks == []


TODAY = pd.Timestamp(FIXED_TODAY)
long_running_tasks_sensor = build_long_running_tasks_sensor(clock=fixed_clock)

# Task types and run ids of the workflow are free text: some carry secrets.
TEXT_OF = {secret: text for _, secret, text in PLANTED}
SECRET_TASK_TYPE = f"deploy.shop {TEXT_OF['Quokka-Passw0rd!']}"
OTHER_TASK_TYPE = "etl.orders"


def secret_bearing_runs() -> pd.DataFrame:
    """Two weeks of history for two task types, and one stuck run of each, ids full of secrets."""
    rows = []
    for task_type in (SECRET_TASK_TYPE, OTHER_TASK_TYPE):
        for i in range(10):
            ended = TODAY - pd.Timedelta(days=2) + pd.Timedelta(hours=i)
            rows.append(
                {"run_id": f"{task_type}#{i} {TEXTS[i]}", "task_type": task_type, "status": "success",
                 "started_at": ended - pd.Timedelta(seconds=100 + 10 * i), "ended_at": ended}
            )  # fmt: skip
    now = pd.Timestamp(FIXED_NOW)
    stuck = (
        (SECRET_TASK_TYPE, TEXT_OF["QuokkaBearerToken0123"]),
        (OTHER_TASK_TYPE, TEXT_OF["QuokkaUrlPassw0rd"]),
        (OTHER_TASK_TYPE, TEXT_OF["quokka.ops@acme-corp.io"]),
    )
    for task_type, text in stuck:
        rows.append(
            {"run_id": f"stuck {text}", "task_type": task_type, "status": "running",
             "started_at": now - pd.Timedelta(hours=2), "ended_at": pd.NaT}
        )  # fmt: skip
    return pd.DataFrame(rows)


def test_secrets_in_task_types_and_run_ids_reach_no_alert_sink_table_metadata_or_log(
    tmp_path: Path, capfd, caplog, recording_server
):
    caplog.set_level(logging.DEBUG)
    workflow_url, alerts_url = f"sqlite:///{tmp_path / 'workflow.db'}", f"sqlite:///{tmp_path / 'alerts.db'}"
    workflow, alert_store = SqlWorkflowService(url=workflow_url), AlertStore(url=alerts_url)
    workflow.write_runs(secret_bearing_runs())
    webhook, slack = recording_server(), recording_server(slack=True)
    sinks = AlertSinks(webhook_url=webhook.url, slack_token="xoxb-test", slack_api_url=slack.url)
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        baselines = dg.materialize(
            [task_duration_baselines],
            instance=instance,
            partition_key=(TODAY - timedelta(days=1)).strftime("%Y-%m-%d"),
            resources={"workflow": workflow, "alert_store": alert_store},
        )
        resources = {"workflow": workflow, "alert_store": alert_store, "alert_sinks": sinks}
        context = dg.build_sensor_context(instance=instance, resources=resources)
        tick = long_running_tasks_sensor(context)
        event_log_leaks = leaks_in_event_logs(instance)

    # Three stuck runs, alerted, delivered to both sinks, with their secrets as placeholders.
    alerts = alert_store.alerts()
    assert len(alerts) == 3 and len(webhook.received) == 3 and len(slack.received) == 3
    assert "<bearer_token>" in " ".join(alerts["run_id"])
    payloads = [request["body"] for request in webhook.received]
    assert "<assigned_secret>" in " ".join(payload["task_type"] + payload["text"] for payload in payloads)

    found = leaks("task_duration_baselines value", baselines.asset_value("task_duration_baselines").to_csv())
    for event in baselines.get_asset_materialization_events():
        found += leaks("task_duration_baselines metadata", dg.serialize_value(event.materialization))
    found += leaks("sensor result", repr(tick))
    found += event_log_leaks
    for table in ("alerts", "alert_deliveries"):
        with sa.create_engine(alerts_url).connect() as connection:
            found += leaks(f"{table} table", pd.read_sql_table(table, connection).astype(str).to_csv())
    found += leaks("webhook", json.dumps(webhook.received)) + leaks("slack", json.dumps(slack.received))
    found += leaks_in_files(home)
    logged_leaks, logged = leaks_in_output(capfd, caplog)
    assert "has been running for" in logged  # the capture saw the sensor's alert log lines
    assert found + logged_leaks == []
