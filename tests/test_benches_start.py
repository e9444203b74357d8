"""The benchmarks still run end to end, at a size that takes seconds: they are not part of `make test`,
and bench/scale.py once failed for a resource the assets had come to need (issue 17) without any test
noticing. Each runs as a user runs it, in a process of its own, on data it makes (never ../shared)."""

import csv
import json
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_bench(script: str, *arguments: str) -> None:
    finished = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *arguments],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]


def test_the_scale_bench_materializes_a_small_day_from_the_store_to_the_report(tmp_path):
    output = tmp_path / "scale.json"
    run_bench("scale.py", "--events", "300", "--stores", "sqlite", "--seed-events", "0",
              "--drain3-max-events", "0", "--output", str(output))  # fmt: skip
    [result] = json.loads(output.read_text())["results"]
    [run] = result["runs"]
    assert run["store"] == "sqlite" and run["events"] == 300 and run["total_s"] > 0
    assert set(run["steps"]) >= {
        "deployment_events_dump", "flatten_events", "cleaned_corpus", "error_vectors", "error_clusters",
        "error_cluster_report",
    }  # fmt: skip
    assert run["clusters"] >= 1


def test_the_catalog_bench_records_a_short_history(tmp_path):
    output = tmp_path / "catalog.json"
    run_bench(
        "catalog.py", "cost", "--days", "6", "--groups", "30", "--events", "10000", "--output", str(output)
    )
    figures = json.loads(output.read_text())["figures"]
    assert figures["days"] == 6 and figures["groups"] == 30
    assert figures["record_newest_day_s"] >= 0 and figures["record_oldest_day_again_s"] >= 0
    assert figures["record_newest_day_again_s"] >= 0


def test_the_duration_accuracy_bench_scores_every_estimator_on_a_csv_of_runtimes(tmp_path):
    data, output = tmp_path / "runtimes.csv", tmp_path / "accuracy.json"
    draw = random.Random(1)
    with data.open("w", newline="") as file:
        rows = csv.writer(file)
        rows.writerow(["task_type", "order_in_type", "runtime_s"])
        for task_type, median_s in (("etl/load", 120.0), ("ml/train", 900.0)):
            for order in range(80):
                rows.writerow([task_type, order, round(median_s * draw.lognormvariate(0, 0.2), 3)])
    run_bench("duration_accuracy.py", "--data", str(data), "--output", str(output))
    result = json.loads(output.read_text())
    assert result["n_runs"] == 160 and result["n_task_types"] == 2
    scored = {row["estimator"]: row for row in result["at_defaults"]}
    assert set(scored) == {"mean_std", "log_mad", "quantile", "alert_budget"}
    assert [row["estimator"] for row in result["at_defaults"] if row.get("default")] == ["alert_budget"]
    for row in scored.values():
        assert row["hang_recall"] == 1.0  # a hang outlasts every limit
        assert 0 <= row["recall_3x"] <= 1 and row["alerts_per_task_type_per_day"] >= 0
