"""Error groups across days: identity by what a cluster is made of, and each group's state."""

import json
import random

import pandas as pd
import pytest

from faultline.catalog import (
    CLUSTER_COLUMNS,
    CatalogReplay,
    CatalogSettings,
    DayClusters,
    assign_groups,
    catalog_states,
    day_clusters,
    escalation_p_value,
    match_score,
    states_frame,
    weighted_jaccard,
)
from faultline.report import sparkline

OOM = {"container app oomkilled exit code var": 60, "java heap space memory limit var": 40}
PROBE = {"liveness probe failed dial tcp var connection refused": 70, "readiness probe failed var": 30}
DNS = {"could not resolve host var": 100}
HINTS = {"oom": "raise the memory limit", "probe": "check the port", "dns": ""}


def cluster(cluster_id: int, n_events: int, signature: dict[str, int], hint: str = "") -> tuple:
    return (cluster_id, n_events, next(iter(signature)), hint, signature)


def day(name: str, n_events: int, *clusters: tuple) -> DayClusters:
    return DayClusters(name, n_events, pd.DataFrame(list(clusters), columns=CLUSTER_COLUMNS))


def dates(n: int, start: str = "2026-11-01") -> list[str]:
    return [d.strftime("%Y-%m-%d") for d in pd.date_range(start, periods=n, freq="D")]


def test_weighted_jaccard_is_the_smaller_shares_over_the_larger():
    # min: 0.5 (x); max: 0.5 (x... the larger of 0.5 and 1.0 is 1.0) + 0.5 (y) = 1.5.
    assert weighted_jaccard({"x": 0.5, "y": 0.5}, {"x": 1.0}) == pytest.approx(0.5 / 1.5)
    assert weighted_jaccard({"x": 1.0}, {"x": 1.0}) == 1.0
    assert weighted_jaccard({"x": 1.0}, {"y": 1.0}) == 0.0


def test_a_shared_hint_weighs_half_and_a_missing_hint_leaves_the_templates_alone():
    assert match_score(0.0, "h", "h") == 0.5
    assert match_score(1.0, "h", "other") == 0.5
    assert match_score(0.8, "h", "h") == pytest.approx(0.9)
    assert match_score(1 / 3, "", "h") == pytest.approx(1 / 3)


def test_a_cluster_keeps_its_group_when_its_templates_are_reworded_but_its_hint_is_the_same():
    reworded = {"container app oomkilled exit code var var": 100}
    days = [
        day("2026-11-01", 1000, cluster(0, 100, OOM, HINTS["oom"]), cluster(1, 80, PROBE, HINTS["probe"])),
        day(
            "2026-11-02", 1000, cluster(0, 90, PROBE, HINTS["probe"]), cluster(1, 100, reworded, HINTS["oom"])
        ),
    ]
    groups = assign_groups(days).set_index(["day", "n_events"])["group_id"]
    assert groups.nunique() == 2
    assert groups[("2026-11-02", 100)] == groups[("2026-11-01", 100)]
    assert groups[("2026-11-02", 90)] == groups[("2026-11-01", 80)]


def test_a_cluster_like_no_known_group_founds_one_and_two_halves_of_a_group_join_it():
    days = [
        day("2026-11-01", 1000, cluster(0, 100, OOM, HINTS["oom"])),
        day(
            "2026-11-02",
            1000,
            # The OOM cause split in two clusters that day, each one of its templates.
            cluster(0, 60, {"container app oomkilled exit code var": 60}, HINTS["oom"]),
            cluster(1, 40, {"java heap space memory limit var": 40}, HINTS["oom"]),
            cluster(2, 30, DNS),
        ),
    ]
    groups = assign_groups(days)
    second = groups[groups["day"] == "2026-11-02"].set_index("n_events")
    assert second.loc[100, "cluster_ids"] == [0, 1]
    assert second.loc[100, "group_id"] == groups.loc[0, "group_id"]
    assert second.loc[30, "group_id"] != groups.loc[0, "group_id"]
    assert second.loc[30, "share"] == 0.03


def history(n_days: int = 12) -> list[DayClusters]:
    """Three causes: OOM steady, PROBE gone after day 5, DNS new on day 9 (reworded every day)."""
    days = []
    for i, name in enumerate(dates(n_days)):
        clusters = [cluster(0, 100 + i, OOM, HINTS["oom"])]
        if i < 5:
            clusters.append(cluster(1, 50, PROBE, HINTS["probe"]))
        if i >= 8:
            clusters.append(
                cluster(len(clusters), 20, {f"could not resolve host var{'s' * (i % 2)}": 15, **DNS})
            )
        days.append(day(name, 1000, *clusters))
    return days


def test_days_recorded_in_any_order_give_the_catalog_of_date_order():
    days = history()
    in_order = catalog_states(days)
    for seed in range(5):
        shuffled = days.copy()
        random.Random(seed).shuffle(shuffled)
        pd.testing.assert_frame_equal(catalog_states(shuffled), in_order)


def test_a_replay_taken_apart_and_rebuilt_every_day_gives_the_catalog_to_the_last_bit():
    days = history(12)
    # PROBE back on day 11, and a busy OOM day 10: regressed and escalating cross a rebuild too.
    days[9] = day(days[9].day, 1000, cluster(0, 400, OOM, HINTS["oom"]))
    days[10] = day(days[10].day, 1000, *days[10].clusters.itertuples(index=False), cluster(9, 40, PROBE))
    settings = CatalogSettings(memory_days=3)
    replay, rows = CatalogReplay(settings), []
    for each in days:
        # Through JSON, as the catalog's database keeps it.
        newest, totals, groups = json.loads(json.dumps(replay.memory()))
        replay = CatalogReplay(settings, newest, totals, groups)
        rows += replay.step(each)
    states = states_frame(rows)
    pd.testing.assert_frame_equal(states, catalog_states(days, settings), check_exact=True)
    assert {"regressed", "escalating", "resolved"} <= set(states["state"])
    with pytest.raises(ValueError, match="not after 2026-11-12"):
        replay.step(days[4])


def test_states_new_resolved_and_regressed_follow_their_rules():
    days = history(12)
    # PROBE comes back on day 11, after 6 days away.
    days[10] = day(
        days[10].day, 1000, *days[10].clusters.itertuples(index=False), cluster(9, 40, PROBE, HINTS["probe"])
    )
    states = catalog_states(days)
    probe = states[states["label"].str.startswith("liveness")].set_index("day")
    names = dates(12)
    assert probe.loc[names[0], "state"] == "new"
    assert list(probe.loc[names[1:5], "state"]) == ["ongoing"] * 4
    # Absent on days 6 and 7: still ongoing; the third recorded day without it, resolved.
    assert list(probe.loc[names[5:7], "state"]) == ["ongoing", "ongoing"]
    assert probe.loc[names[7], "state"] == "resolved" and probe.loc[names[7], "changed"]
    assert probe.loc[names[8], "state"] == "resolved" and not probe.loc[names[8], "changed"]
    assert probe.loc[names[10], "state"] == "regressed" and probe.loc[names[10], "changed"]
    dns = states[states["label"].str.startswith("could")]
    assert dns["group_id"].nunique() == 1
    assert dns.iloc[0]["day"] == names[8] and dns.iloc[0]["state"] == "new"
    steady = states[states["label"].str.startswith("container")]
    assert set(steady["state"].iloc[1:]) == {"ongoing"}


def test_escalating_is_a_rate_three_times_its_level_and_not_a_busier_day():
    names = dates(9)
    settings = CatalogSettings()
    # 20 events in 1,000 for eight days, then:
    days = [day(n, 1000, cluster(0, 20, OOM, HINTS["oom"])) for n in names[:8]]
    cases = {
        "tripled": day(names[8], 1000, cluster(0, 60, OOM, HINTS["oom"])),  # expected 20, p ~ 1e-10
        "noisy": day(names[8], 1000, cluster(0, 32, OOM, HINTS["oom"])),  # 1.6x: under the ratio
        "busier day": day(names[8], 2500, cluster(0, 50, OOM, HINTS["oom"])),  # the same 2%
    }
    states = {name: catalog_states([*days, last], settings).iloc[-1] for name, last in cases.items()}
    assert states["tripled"]["state"] == "escalating"
    assert states["tripled"]["expected_events"] == 20.0
    assert states["tripled"]["baseline_events"] == 140  # the 7 calendar days before
    assert states["tripled"]["p_value"] < 1e-8
    assert states["noisy"]["state"] == "ongoing"
    assert states["busier day"]["state"] == "ongoing"
    # Few events never escalate, however large the ratio: 9 where 1 was expected.
    few = [day(n, 1000, cluster(0, 1, OOM, HINTS["oom"])) for n in names[:8]]
    assert catalog_states([*few, day(names[8], 1000, cluster(0, 9, OOM, HINTS["oom"]))]).iloc[-1][
        "state"
    ] == ("ongoing")


def test_a_group_new_yesterday_is_judged_against_its_own_days_only():
    names = dates(9)
    days = [day(n, 1000, cluster(0, 100, OOM, HINTS["oom"])) for n in names[:7]]
    days.append(day(names[7], 1000, cluster(0, 100, OOM, HINTS["oom"]), cluster(1, 40, DNS)))
    days.append(day(names[8], 1000, cluster(0, 100, OOM, HINTS["oom"]), cluster(1, 45, DNS)))
    dns = catalog_states(days).query("label == 'could not resolve host var'")
    # Expected 40 from its one day, not 40 / 8 from the eight days it did not exist on most of.
    assert list(dns["state"]) == ["new", "ongoing"]
    assert dns["expected_events"].iloc[1] == 40.0


def test_the_escalation_test_is_the_conditional_binomial_by_hand():
    # 5 events today, none in as many events before: each of the 5 falls on today with p 1/2.
    assert escalation_p_value(5, 100, 0, 100) == pytest.approx(0.5**5)
    # 2 today, 2 before, today a third of the volume: P(X >= 2), X ~ Bin(4, 1/3), is 33/81.
    assert escalation_p_value(2, 100, 2, 200) == pytest.approx(33 / 81)
    assert escalation_p_value(0, 100, 2, 200) == 1.0


def test_day_clusters_keep_each_clusters_templates_hint_and_label_from_the_report_rows():
    rows = pd.DataFrame(
        {
            "cluster_id": [0, 0, 0, 1, -1],
            "cleaned": ["a var", "b var", "a var", "c", "noise"],
            "hint_text": ["port 8080 refused", "", "port 9090 refused", "", ""],
            "n_events": [5, 3, 4, 2, 7],
        }
    )
    result = day_clusters("2026-11-01", rows, n_events=21, labels={0: "A <*>"})
    assert result.n_events == 21
    first, second = result.clusters.to_dict(orient="records")
    assert first == {
        "cluster_id": 0, "n_events": 12, "label": "A <*>", "hint": "port <*> refused",
        "signature": {"a var": 9, "b var": 3},
    }  # fmt: skip
    assert second["label"] == "c" and second["hint"] == ""


def test_sparkline_scales_to_the_highest_day():
    assert sparkline([0, 1, 2, 4, 8]) == "·▁▂▄█"
    assert sparkline([0, 0]) == "··"
