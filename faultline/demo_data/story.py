"""The demo's story told by the product: its 14 days, each through the chain (`run_day`), recorded in
the error-group catalog, with the true cause of every event beside the group it fell in. The test of
the story and the benchmark that checks it on other generator seeds both read it from here.
"""

import json
import multiprocessing
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from faultline.catalog import DayClusters, assign_groups, day_clusters, group_states
from faultline.demo_data.deployment_events import generate_deployment_batches
from faultline.pipeline import DaySettings, run_day, write_parts
from resources.error_source import DUMP_COLUMNS


@dataclass(frozen=True)
class ToldStory:
    """The catalog's states over the days, and each (cause, day)'s group: the group most of the cause's
    clustered events fell in that day, None on a day all of them were noise."""

    states: pd.DataFrame
    cause_days: pd.DataFrame


def _story_day(day: str, dump: pd.DataFrame) -> tuple[DayClusters, pd.DataFrame]:
    """One day through the chain on one core: its clusters as the catalog records them, and each event's
    true cause and cluster."""
    with tempfile.TemporaryDirectory() as folder:
        result = run_day(
            write_parts(dump.reset_index(drop=True), Path(folder) / "dump"),
            Path(folder) / "events",
            DaySettings(workers=1),
        )
        causes = result.events.to_frame()["extra"].map(lambda extra: json.loads(extra)["root_cause"])
    groups = result.report.groups
    labels = dict(zip(groups["cluster_id"], groups["label"], strict=True))
    recorded = day_clusters(day, result.clustered.report_rows, result.report.n_events, labels)
    truth = pd.DataFrame(
        {"day": day, "cause": causes.to_numpy(), "cluster_id": result.clustered.events["cluster_id"]}
    )
    return recorded, truth


def tell_story(end: datetime, seed: int, workers: int = 2) -> ToldStory:
    """The demo's story days before `end` for generator `seed`, the days run `workers` at a time (each a
    single core's work: Doc2Vec trains on one thread), then recorded in date order."""
    rows = pd.DataFrame(generate_deployment_batches(end, seed=seed, story=True), columns=DUMP_COLUMNS)
    days = rows.groupby(rows["created_at"].map(lambda t: t.strftime("%Y-%m-%d")))
    names, dumps = zip(*days, strict=True)
    if workers > 1:
        # Spawned: a fork of a process holding Dagster's or pytest's threads could copy a held lock.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            results = list(pool.map(_story_day, names, dumps))
    else:
        results = [_story_day(name, dump) for name, dump in zip(names, dumps, strict=True)]
    recorded = [day for day, _ in results]
    group_days = assign_groups(recorded)
    states = group_states(group_days, {d.day: d.n_events for d in recorded})
    to_group = {(row.day, c): row.group_id for row in group_days.itertuples() for c in row.cluster_ids}
    events = pd.concat([truth for _, truth in results], ignore_index=True)
    events["group"] = [to_group.get(key) for key in zip(events["day"], events["cluster_id"], strict=True)]
    cause_days = (
        events.groupby(["cause", "day"])["group"]
        .agg(lambda g: g.value_counts().index[0] if g.notna().any() else None)
        .reset_index()
    )
    return ToldStory(states, cause_days)
