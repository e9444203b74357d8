"""Error groups across days: each day's clusters matched to the groups already known, so one root cause
keeps one id, and each group's state on each day (new, ongoing, escalating, regressed, resolved).

Everything here is a function of the days given, taken in date order: the catalog of a set of days
is the same whatever order they were clustered in, and re-running a day replaces it.

A cluster is matched by what it is made of: its *signature*, the share of its events each of its
cleaned templates holds, and its *hint*, the platform's diagnosis most of its events carry. A group's
signature is the mean of its signatures on the last `memory_days` days it was seen.
"""

import hashlib
import re
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from faultline.cleaning import mask_variable_parts
from faultline.report import WILDCARD

STATES = ("new", "ongoing", "escalating", "regressed", "resolved")
# The states that are news on the day a group enters them: what the report leads with.
CHANGES = ("new", "escalating", "regressed", "resolved")

DEFAULT_MATCH_THRESHOLD = 0.3
DEFAULT_HINT_WEIGHT = 0.5
DEFAULT_MEMORY_DAYS = 7
DEFAULT_SIGNATURE_TEMPLATES = 20
DEFAULT_RESOLVED_AFTER_DAYS = 3  # the default
DEFAULT_BASELINE_DAYS = 7
DEFAULT_ESCALATION_P_VALUE = 0.001
DEFAULT_ESCALATION_MIN_RATIO = 2.0
DEFAULT_ESCALATION_MIN_EVENTS = 10
DEFAULT_TREND_DAYS = 7


@dataclass(frozen=True)
class CatalogSettings:
    """How clusters are matched to groups and how a group's state is judged; the assets' Config
    carries the same names and defaults."""

    # A cluster joins the known group it scores highest with, if the score reaches this; else it
    # founds a group. Score: (1 - hint_weight) x weighted Jaccard of the template shares + hint_weight
    # x (same hint), when both carry a hint; the weighted Jaccard alone when either has none.
    match_threshold: float = DEFAULT_MATCH_THRESHOLD
    hint_weight: float = DEFAULT_HINT_WEIGHT
    memory_days: int = DEFAULT_MEMORY_DAYS  # days seen whose signatures make a group's
    signature_templates: int = DEFAULT_SIGNATURE_TEMPLATES  # a cluster's most frequent templates kept
    resolved_after_days: int = DEFAULT_RESOLVED_AFTER_DAYS  # recorded days in a row without the group
    baseline_days: int = DEFAULT_BASELINE_DAYS  # the trailing days a group's level is judged against
    escalation_p_value: float = DEFAULT_ESCALATION_P_VALUE
    escalation_min_ratio: float = DEFAULT_ESCALATION_MIN_RATIO
    escalation_min_events: int = DEFAULT_ESCALATION_MIN_EVENTS
    trend_days: int = DEFAULT_TREND_DAYS


@dataclass(frozen=True)
class DayClusters:
    """One day as the catalog keeps it: its error events in all (noise included) and one row per
    cluster: `cluster_id`, `n_events`, `label`, `hint`, `signature` ({cleaned template: events},
    its most frequent templates)."""

    day: str  # YYYY-MM-DD
    n_events: int
    clusters: pd.DataFrame


_DIGITS = re.compile(r"\d+")
CLUSTER_COLUMNS = ["cluster_id", "n_events", "label", "hint", "signature"]


def day_clusters(
    day: str,
    report_rows: pd.DataFrame,
    n_events: int,
    labels: dict[int, str] | None = None,
    signature_templates: int = DEFAULT_SIGNATURE_TEMPLATES,
) -> DayClusters:
    """The day's clusters (`cluster_id` >= 0 of the clusters' report rows: one row per variant, hint and
    cluster with `n_events`, `cleaned` and `hint_text`) as the catalog keeps them; `labels` by cluster
    id (the report's), else each cluster's most frequent template."""
    rows = report_rows[report_rows["cluster_id"] >= 0]
    # Per cluster its templates, most frequent first, ties by text, so what is kept never depends on
    # row order; and its most frequent hint the same way.
    templates = rows.groupby(["cluster_id", "cleaned"], sort=False)["n_events"].sum().reset_index()
    templates = templates.sort_values(["cluster_id", "n_events", "cleaned"], ascending=[True, False, True])
    templates = templates[templates.groupby("cluster_id").cumcount() < signature_templates]
    hints = rows[rows["hint_text"] != ""].groupby(["cluster_id", "hint_text"], sort=False)["n_events"].sum()
    hints = hints.reset_index().sort_values(
        ["cluster_id", "n_events", "hint_text"], ascending=[True, False, True]
    )
    top_hints = hints.drop_duplicates("cluster_id").set_index("cluster_id")["hint_text"]
    sizes = rows.groupby("cluster_id")["n_events"].sum()
    clusters = []
    for cluster_id, kept in templates.groupby("cluster_id", sort=True):
        signature = dict(zip(kept["cleaned"].astype(str), kept["n_events"].astype(int).tolist(), strict=True))
        # Numbers or hosts inside a hint would make one diagnosis many.
        top = top_hints.get(cluster_id)
        hint = (
            ""
            if top is None
            else " ".join(_DIGITS.sub(WILDCARD, mask_variable_parts(str(top), WILDCARD)).split())
        )
        label = (labels or {}).get(int(cluster_id)) or next(iter(signature), "")
        clusters.append((int(cluster_id), int(sizes[cluster_id]), label, hint, signature))
    return DayClusters(day, int(n_events), pd.DataFrame(clusters, columns=CLUSTER_COLUMNS))


def _shares(signature: dict[str, int]) -> dict[str, float]:
    total = sum(signature.values())
    return {text: n / total for text, n in signature.items()} if total else {}


def weighted_jaccard(a: dict[str, float], b: dict[str, float]) -> float:
    """Sum of the smaller share over sum of the larger, over both distributions' templates (what
    `assign_groups` computes through its index, as `_jaccard` of the summed smaller shares)."""
    smaller = sum(min(share, b[text]) for text, share in a.items() if text in b)
    larger = sum(a.values()) + sum(b.values()) - smaller
    return smaller / larger if larger > 0 else 0.0


def match_score(
    jaccard: float, cluster_hint: str, group_hint: str, hint_weight: float = DEFAULT_HINT_WEIGHT
) -> float:
    """How alike a cluster and a group are, from 0 to 1, given the weighted Jaccard of their template
    shares: (1 - hint_weight) x Jaccard + hint_weight x (same hint) when both carry a hint, else the
    Jaccard alone (see CatalogSettings.match_threshold)."""
    if cluster_hint and group_hint:
        return (1 - hint_weight) * jaccard + hint_weight * (cluster_hint == group_hint)
    return jaccard


def _jaccard(smaller: float) -> float:
    """The weighted Jaccard of two distributions that each sum to 1, from their summed smaller shares:
    the larger ones sum to 2 minus that."""
    return smaller / (2.0 - smaller) if smaller < 2.0 else 1.0


def _group_id(signature: dict[str, int], hint: str, taken: set[str]) -> str:
    """A short id from what founded the group (its top template and hint), stable whatever day it is
    computed on; a suffix in the rare case two groups are founded alike."""
    top = min(signature.items(), key=lambda item: (-item[1], item[0]))[0] if signature else ""
    base = "g" + hashlib.sha1(f"{top}\x00{hint}".encode()).hexdigest()[:8]
    group_id, n = base, 1
    while group_id in taken:
        n += 1
        group_id = f"{base}-{n}"
    return group_id


@dataclass
class _Group:
    group_id: str
    hint: str
    recent: deque = field(default_factory=deque)  # the last memory_days signatures, as shares
    summed: dict[str, float] = field(default_factory=dict)  # their sum, template by template

    def share(self, text: str) -> float:
        """The template's share in the group's signature: its mean share over the recent days."""
        return self.summed.get(text, 0.0) / len(self.recent)

    def remember(self, shares: dict[str, float], memory_days: int) -> None:
        self.recent.append(shares)
        for text, share in shares.items():
            self.summed[text] = self.summed.get(text, 0.0) + share
        while len(self.recent) > memory_days:
            for text, share in self.recent.popleft().items():
                left = self.summed[text] - share
                if left > 1e-12:
                    self.summed[text] = left
                else:
                    del self.summed[text]


GROUP_DAY_COLUMNS = ["day", "group_id", "n_events", "share", "label", "cluster_ids"]


def assign_groups(days: list[DayClusters], settings: CatalogSettings = CatalogSettings()) -> pd.DataFrame:
    """Each day's clusters matched to the groups of the days before it, days in date order: one row
    per day and group seen that day (`GROUP_DAY_COLUMNS`; `share` of the day's error events). Several
    clusters of one day may join one group (a cause split that day); a cluster joins one group."""
    groups: dict[str, _Group] = {}
    by_template: dict[str, set[str]] = {}
    by_hint: dict[str, set[str]] = {}
    rows = []
    for day in sorted(days, key=lambda d: d.day):
        joined: dict[str, list] = {}
        founded = []
        for cluster in day.clusters.sort_values("cluster_id").itertuples(index=False):
            shares = _shares(cluster.signature)
            # Each known group's smaller shares summed over the templates it shares with the cluster,
            # through the index: the weighted Jaccard of two distributions is that sum over 2 minus it.
            overlap: dict[str, float] = {}
            for text, share in shares.items():
                for group_id in by_template.get(text, ()):
                    group_share = groups[group_id].share(text)
                    overlap[group_id] = overlap.get(group_id, 0.0) + min(share, group_share)
            candidates = set(overlap)
            if cluster.hint:
                candidates |= by_hint.get(cluster.hint, set())
            scores = {
                group_id: match_score(
                    _jaccard(overlap.get(group_id, 0.0)),
                    cluster.hint,
                    groups[group_id].hint,
                    settings.hint_weight,
                )
                for group_id in candidates
            }
            # The best score; between equals, the smallest id, so the result never depends on set order.
            best = min(scores, key=lambda group_id: (-scores[group_id], group_id), default=None)
            best_score = scores[best] if best is not None else 0.0
            if best is not None and best_score >= settings.match_threshold:
                joined.setdefault(best, []).append(cluster)
            else:
                founded.append(cluster)
        # Matched against the groups as they stood before the day, so a day's clusters never match
        # each other and their order within the day does not matter.
        for cluster in founded:
            group_id = _group_id(cluster.signature, cluster.hint, set(groups))
            groups[group_id] = _Group(group_id, cluster.hint)
            if cluster.hint:
                by_hint.setdefault(cluster.hint, set()).add(group_id)
            joined[group_id] = [cluster]
        for group_id, clusters in joined.items():
            group = groups[group_id]
            summed: Counter[str] = Counter()
            for cluster in clusters:
                summed.update(cluster.signature)
            group.remember(_shares(dict(summed)), settings.memory_days)
            for text in group.recent[-1]:
                by_template.setdefault(text, set()).add(group_id)
            n_events = sum(int(cluster.n_events) for cluster in clusters)
            biggest = max(clusters, key=lambda cluster: (cluster.n_events, -cluster.cluster_id))
            rows.append(
                (
                    day.day,
                    group_id,
                    n_events,
                    n_events / day.n_events if day.n_events else 0.0,
                    biggest.label,
                    sorted(int(cluster.cluster_id) for cluster in clusters),
                )
            )
    frame = pd.DataFrame(rows, columns=GROUP_DAY_COLUMNS)
    return frame.sort_values(
        ["day", "n_events", "group_id"], ascending=[True, False, True], ignore_index=True
    )


def escalation_p_value(today: int, today_total: int, baseline: int, baseline_total: int) -> float:
    """One-sided exact conditional test that a group's rate of events today is above its rate over
    the baseline days (the C-test of two Poisson rates, Przyborowski and Wilenski 1940): given
    `today + baseline` events, each falls on today with probability today_total / (today_total +
    baseline_total) if the rate is unchanged. Day-to-day volume is taken out by the totals."""
    if baseline_total <= 0 or today_total <= 0 or today <= 0:
        return 1.0
    from scipy.stats import binom  # here: scipy.stats takes 1.4 s to import, and every run loads this module

    q = today_total / (today_total + baseline_total)
    return float(binom.sf(today - 1, today + baseline, q))


STATE_COLUMNS = [
    "day", "group_id", "state", "changed", "n_events", "share", "baseline_events", "expected_events",
    "p_value", "first_seen", "last_seen", "label",
]  # fmt: skip


def group_states(
    group_days: pd.DataFrame, day_totals: dict[str, int], settings: CatalogSettings = CatalogSettings()
) -> pd.DataFrame:
    """Every group's state on every recorded day from its first (`day_totals`: each recorded day's
    error events). `changed` is true on the day a group enters new, escalating, regressed or
    resolved. The rules:

    - new: seen today for the first time;
    - regressed: seen today after being resolved;
    - escalating: seen today, at least `escalation_min_events` events and `escalation_min_ratio`
      times what its share over the `baseline_days` days before would give (counted from the day it
      was first seen), and the C-test's p-value below `escalation_p_value`;
    - resolved: not seen on the last `resolved_after_days` recorded days (and after, until it is back);
    - ongoing: otherwise (seen today, or missing fewer days than that).
    """
    recorded = sorted(day_totals)
    totals = np.array([day_totals[day] for day in recorded], dtype=np.int64)
    position = {day: i for i, day in enumerate(recorded)}
    # Each recorded day's baseline: the recorded days in the `baseline_days` calendar days before it.
    dates = pd.to_datetime(pd.Series(recorded, dtype=object)).to_numpy()
    lows = np.searchsorted(dates, dates - np.timedelta64(settings.baseline_days, "D"), side="left")
    summed_totals = np.concatenate([[0], np.cumsum(totals)])
    rows = []
    for group_id, seen in group_days.groupby("group_id", sort=True):
        counts = np.zeros(len(recorded), dtype=np.int64)
        index = [position[day] for day in seen["day"]]
        counts[index] = seen["n_events"].to_numpy()
        first = min(index)
        # A group's level counts from the day it was first seen: the days before, it did not exist.
        starts = np.maximum(lows, first)
        summed = np.concatenate([[0], np.cumsum(counts)])
        baselines = summed[:-1] - summed[starts]
        baseline_totals = np.maximum(summed_totals[:-1] - summed_totals[starts], 0)
        expected = np.divide(
            totals * baselines, baseline_totals, out=np.zeros(len(recorded)), where=baseline_totals > 0
        )
        p_values = np.ones(len(recorded))
        # The test only where the counts could pass the other two bars: most days, most groups, cannot.
        tested = (
            (baseline_totals > 0)
            & (counts >= settings.escalation_min_events)
            & (counts >= settings.escalation_min_ratio * expected)
        )
        if tested.any():
            from scipy.stats import binom  # here: see escalation_p_value

            q = totals[tested] / (totals[tested] + baseline_totals[tested])
            p_values[tested] = binom.sf(counts[tested] - 1, counts[tested] + baselines[tested], q)
        escalating = tested & (p_values < settings.escalation_p_value)
        labels = dict(zip(seen["day"], seen["label"], strict=True))
        state, last_seen, absent, label = None, None, 0, ""
        for i in range(first, len(recorded)):
            day, count = recorded[i], int(counts[i])
            previous = state
            if count > 0:
                label = labels[day]
                if previous is None:
                    state = "new"
                elif previous == "resolved":
                    state = "regressed"
                else:
                    state = "escalating" if escalating[i] else "ongoing"
                last_seen, absent = day, 0
            else:
                absent += 1
                state = "resolved" if absent >= settings.resolved_after_days else "ongoing"
            changed = state in CHANGES and state != previous
            rows.append(
                (day, group_id, state, changed, count, count / totals[i] if totals[i] else 0.0,
                 int(baselines[i]), round(float(expected[i]), 2), float(p_values[i]), recorded[first],
                 last_seen, label)
            )  # fmt: skip
    frame = pd.DataFrame(rows, columns=STATE_COLUMNS)
    return frame.sort_values(
        ["day", "n_events", "group_id"], ascending=[True, False, True], ignore_index=True
    )


def catalog_states(days: list[DayClusters], settings: CatalogSettings = CatalogSettings()) -> pd.DataFrame:
    """Identity and state together: every group's row on every recorded day from its first."""
    group_days = assign_groups(days, settings)
    return group_states(group_days, {day.day: day.n_events for day in days}, settings)
