"""The demo's story over its 14 days, told by the error-group catalog: a cause new on day 12, one three
times its share from day 12, one gone after day 9, the other 14 steady; on both generator seeds, each
day through the product's chain (`faultline.pipeline.run_day`) and the catalog."""

import json
from collections import Counter
from datetime import UTC, datetime

import pandas as pd
import pytest

from faultline.demo_data.deployment_events import DEMO_STORY, generate_deployment_batches
from faultline.demo_data.story import tell_story

END = datetime(2026, 11, 22, tzinfo=UTC)
DAYS = [d.strftime("%Y-%m-%d") for d in pd.date_range("2026-11-08", periods=14, freq="D")]


def day_number(day: str) -> int:
    return DAYS.index(day) + 1


def test_the_story_changes_three_causes_and_keeps_the_days_totals():
    plain = generate_deployment_batches(END, seed=7)
    told = generate_deployment_batches(END, seed=7, story=True)
    counts: dict[str, Counter] = {}
    for rows, name in ((plain, "plain"), (told, "story")):
        for row in rows:
            for event in json.loads(row["payload"]):
                if event["root_cause"]:
                    counts.setdefault(name, Counter())[
                        (row["created_at"].strftime("%Y-%m-%d"), event["root_cause"])
                    ] += 1
    story = counts["story"]
    assert sum(story.values()) == sum(counts["plain"].values()) == 20_000
    assert [story[(day, DEMO_STORY.new_cause)] > 0 for day in DAYS] == [False] * 11 + [True] * 3
    assert [story[(day, DEMO_STORY.stopped_cause)] > 0 for day in DAYS] == [True] * 9 + [False] * 5
    oom_share = [
        story[(day, DEMO_STORY.growing_cause)] / sum(n for (d, _), n in story.items() if d == day)
        for day in DAYS
    ]
    # About 9% of the errors for 11 days, then about 23% (3x its weight among the others).
    assert max(oom_share[:11]) < 0.10 < 0.2 < min(oom_share[11:])


@pytest.fixture(scope="module", params=[7, 11])
def story(request):
    """The catalog of the demo's 14 days of one seed, and which group each cause's events fell in (the
    days two at a time, on the machine's two cores)."""
    told = tell_story(END, seed=request.param, workers=2)
    return told.states, told.cause_days


def test_every_true_cause_keeps_one_group_id_on_every_day_it_has_a_cluster(story):
    _, cause_days = story
    # 222 cause-days (14 days of 15 causes, 9 of the stopped one, 3 of the new one), each with some
    # events in a cluster (seed 7's last day, a Saturday, has 5 of engine_panic: 3 noise, 2 clustered).
    assert len(cause_days) == 222
    assert cause_days["group"].notna().all()
    clustered = cause_days.dropna(subset=["group"])
    modal = clustered.groupby("cause")["group"].transform(lambda g: g.value_counts().index[0])
    kept = (clustered["group"] == modal).groupby(clustered["cause"]).mean()
    assert len(kept) == 17
    assert kept.min() == 1.0
    # One group per cause: no two causes share one.
    assert clustered.groupby("cause")["group"].agg(lambda g: g.value_counts().index[0]).is_unique


def test_the_new_escalating_and_resolved_causes_are_reported_on_day_12_and_nothing_else_ever(story):
    states, cause_days = story
    group_of = cause_days.groupby("cause")["group"].agg(lambda g: g.value_counts().index[0])
    # Day 1 is the catalog's start, where every group is new.
    changes = states[states["changed"] & (states["day"] > DAYS[0])]
    reported = {(day_number(row.day), row.group_id, row.state) for row in changes.itertuples()}
    assert reported == {
        (12, group_of[DEMO_STORY.new_cause], "new"),
        (12, group_of[DEMO_STORY.growing_cause], "escalating"),
        (12, group_of[DEMO_STORY.stopped_cause], "resolved"),
    }
