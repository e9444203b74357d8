"""A sensor tick's alert work at scale: 1,000 new alerts recorded and delivered to a webhook.

On a fresh PostgreSQL database each repetition (created and dropped here), with a webhook served on
loopback (HTTP/1.1, answering 200 at once): `AlertStore.record_alerts`, then `deliver_pending_alerts`
to that webhook, timed together. Issue 19's bar: under 5 s.

    python bench/alert_delivery.py [--alerts 1000] [--repeat 3] [--label NAME] [--output JSON]

Run from another checkout with PYTHONPATH=<checkout> to measure that commit's code the same way
(only `record_alerts` and `deliver_pending_alerts(store, sinks)` are used, which 8a4f775 has too).
"""

import argparse
import http.server
import json
import statistics
import threading
import time
import uuid
from datetime import UTC, datetime

import pandas as pd
import sqlalchemy as sa

from resources.alert_sinks import AlertSinks, deliver_pending_alerts
from resources.alert_store import AlertStore

ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


class _Webhook(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def one_tick(url: str, webhook_url: str, n_alerts: int) -> float:
    now = datetime.now(UTC)
    overdue = pd.DataFrame(
        {
            "task_type": "etl.orders",
            "run_id": [f"run-{i}" for i in range(n_alerts)],
            "started_at": pd.Timestamp(now) - pd.Timedelta(hours=2),
            "elapsed_s": 7200.0,
            "upper_limit_s": 3600.0,
            "mean_s": 1800.0,
            "n_runs": 40,
        }
    )
    started = time.perf_counter()
    store = AlertStore(url=url)
    new = store.record_alerts(overdue, raised_at=now)
    report = deliver_pending_alerts(store, AlertSinks(webhook_url=webhook_url))
    elapsed = time.perf_counter() - started
    if len(new) != n_alerts or report.delivered != {"webhook": n_alerts}:
        raise RuntimeError(f"not every alert was recorded and delivered: {report}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--label", default="current")
    parser.add_argument("--output", default=None, help="append the result to this JSON file")
    args = parser.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    webhook_url = f"http://127.0.0.1:{server.server_address[1]}/"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    seconds = []
    for _ in range(args.repeat):
        name = f"faultline_bench_{uuid.uuid4().hex[:8]}"
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
            seconds.append(one_tick(url, webhook_url, args.alerts))
        finally:
            with admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    result = {
        "label": args.label,
        "alerts": args.alerts,
        "seconds": [round(s, 2) for s in seconds],
        "median_s": round(statistics.median(seconds), 2),
    }
    print(json.dumps(result))
    if args.output:
        try:
            with open(args.output, encoding="utf-8") as file:
                results = json.load(file)
        except FileNotFoundError:
            results = []
        with open(args.output, "w", encoding="utf-8") as file:
            json.dump([*results, result], file, indent=2)


if __name__ == "__main__":
    main()
