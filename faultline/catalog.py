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
from collections.abc import Iterable
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
    # Every template the index files the group under: the index never forgets one, so neither does this.
    templates: set[str] = field(default_factory=set)

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


class _Matcher:
    """Identity, one day after another in date order: the groups as they stand after the days matched
    so far, and the indexes that find a cluster's candidates among them."""

    def __init__(self, settings: CatalogSettings, groups: Iterable[_Group] = ()) -> None:
        self.settings = settings
        self.groups: dict[str, _Group] = {}
        self.by_template: dict[str, set[str]] = {}
        self.by_hint: dict[str, set[str]] = {}
        for group in groups:
            self._add(group)

    def _add(self, group: _Group) -> None:
        self.groups[group.group_id] = group
        if group.hint:
            self.by_hint.setdefault(group.hint, set()).add(group.group_id)
        for text in group.templates:
            self.by_template.setdefault(text, set()).add(group.group_id)

    def match(self, day: DayClusters) -> list[tuple]:
        """The day's clusters matched to the groups of the days before it: its `GROUP_DAY_COLUMNS` rows."""
        groups, settings = self.groups, self.settings
        joined: dict[str, list] = {}
        founded = []
        for cluster in day.clusters.sort_values("cluster_id").itertuples(index=False):
            shares = _shares(cluster.signature)
            # Each known group's smaller shares summed over the templates it shares with the cluster,
            # through the index: the weighted Jaccard of two distributions is that sum over 2 minus it.
            overlap: dict[str, float] = {}
            for text, share in shares.items():
                for group_id in self.by_template.get(text, ()):
                    group_share = groups[group_id].share(text)
                    overlap[group_id] = overlap.get(group_id, 0.0) + min(share, group_share)
            candidates = set(overlap)
            if cluster.hint:
                candidates |= self.by_hint.get(cluster.hint, set())
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
            self._add(_Group(group_id, cluster.hint))
            joined[group_id] = [cluster]
        rows = []
        for group_id, clusters in joined.items():
            group = groups[group_id]
            summed: Counter[str] = Counter()
            for cluster in clusters:
                summed.update(cluster.signature)
            group.remember(_shares(dict(summed)), settings.memory_days)
            for text in group.recent[-1]:
                if text not in group.templates:
                    group.templates.add(text)
                    self.by_template.setdefault(text, set()).add(group_id)
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
        return rows


def assign_groups(days: list[DayClusters], settings: CatalogSettings = CatalogSettings()) -> pd.DataFrame:
    """Each day's clusters matched to the groups of the days before it, days in date order: one row
    per day and group seen that day (`GROUP_DAY_COLUMNS`; `share` of the day's error events). Several
    clusters of one day may join one group (a cause split that day); a cluster joins one group."""
    matcher = _Matcher(settings)
    rows = [row for day in sorted(days, key=lambda d: d.day) for row in matcher.match(day)]
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


@dataclass
class _Standing:
    """A group's state as of the newest day judged, and its events on the recorded days a later day's
    baseline may still count."""

    first_seen: str
    state: str | None = None
    last_seen: str | None = None
    absent: int = 0  # recorded days in a row without it
    label: str = ""
    counts: dict[str, int] = field(default_factory=dict)  # events by day, the baseline's days only


class _Judge:
    """Each group's state, one recorded day after another in date order (see `group_states`)."""

    def __init__(
        self,
        settings: CatalogSettings,
        totals: dict[str, int] | None = None,
        standings: dict[str, _Standing] | None = None,
    ) -> None:
        self.settings = settings
        self.totals = dict(totals or {})  # the recorded days a later day's baseline may count
        self.standings = standings or {}

    def judge(self, day: str, total: int, seen: dict[str, tuple[int, str]]) -> list[tuple]:
        """The `STATE_COLUMNS` rows of `day` (after every day judged so far) of every group seen that
        day or before; `seen`: the day's events and label by group."""
        settings = self.settings
        # The day's baseline: the recorded days in the `baseline_days` calendar days before it.
        low = (pd.Timestamp(day) - pd.Timedelta(days=settings.baseline_days)).strftime("%Y-%m-%d")
        self.totals = {d: n for d, n in self.totals.items() if d >= low}
        window = sorted(self.totals)
        # The window's events from each of its days on (a group's level counts from its first day).
        from_day = dict(
            zip(window, np.cumsum([self.totals[d] for d in window][::-1])[::-1].tolist(), strict=True)
        )
        for group_id in seen:
            if group_id not in self.standings:
                self.standings[group_id] = _Standing(first_seen=day)
        ids = list(self.standings)
        counts = np.zeros(len(ids), dtype=np.int64)
        baselines = np.zeros(len(ids), dtype=np.int64)
        baseline_totals = np.zeros(len(ids), dtype=np.int64)
        for k, group_id in enumerate(ids):
            standing = self.standings[group_id]
            if standing.counts:
                standing.counts = {d: n for d, n in standing.counts.items() if d >= low}
            start = max(low, standing.first_seen)
            baselines[k] = sum(n for d, n in standing.counts.items() if d >= start)
            first = next((d for d in window if d >= start), None)
            baseline_totals[k] = from_day[first] if first is not None else 0
            if group_id in seen:
                counts[k] = seen[group_id][0]
        baseline_totals = np.maximum(baseline_totals, 0)
        totals = np.full(len(ids), total, dtype=np.int64)
        expected = np.divide(
            totals * baselines, baseline_totals, out=np.zeros(len(ids)), where=baseline_totals > 0
        )
        p_values = np.ones(len(ids))
        # The test only where the counts could pass the other two bars: most groups, most days, cannot.
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
        day_total = np.int64(total)
        rows = []
        for k, group_id in enumerate(ids):
            standing = self.standings[group_id]
            count = int(counts[k])
            previous = standing.state
            if count > 0:
                standing.label = seen[group_id][1]
                if previous is None:
                    state = "new"
                elif previous == "resolved":
                    state = "regressed"
                else:
                    state = "escalating" if escalating[k] else "ongoing"
                standing.last_seen, standing.absent = day, 0
                standing.counts[day] = count
            else:
                standing.absent += 1
                state = "resolved" if standing.absent >= settings.resolved_after_days else "ongoing"
            standing.state = state
            changed = state in CHANGES and state != previous
            rows.append(
                (day, group_id, state, changed, count, count / day_total if day_total else 0.0,
                 int(baselines[k]), round(float(expected[k]), 2), float(p_values[k]), standing.first_seen,
                 standing.last_seen, standing.label)
            )  # fmt: skip
        self.totals[day] = int(total)
        return rows


def states_frame(rows: list[tuple]) -> pd.DataFrame:
    """`STATE_COLUMNS` rows as `group_states` returns them: by day, the most events first."""
    frame = pd.DataFrame(rows, columns=STATE_COLUMNS)
    return frame.sort_values(
        ["day", "n_events", "group_id"], ascending=[True, False, True], ignore_index=True
    )


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
    seen_by_day = {
        day: dict(
            zip(seen["group_id"], zip(seen["n_events"].tolist(), seen["label"], strict=True), strict=True)
        )
        for day, seen in group_days.groupby("day", sort=False)
    }
    judge = _Judge(settings)
    rows = [
        row
        for day in sorted(day_totals)
        for row in judge.judge(day, day_totals[day], seen_by_day.get(day, {}))
    ]
    return states_frame(rows)


def catalog_states(days: list[DayClusters], settings: CatalogSettings = CatalogSettings()) -> pd.DataFrame:
    """Identity and state together: every group's row on every recorded day from its first."""
    group_days = assign_groups(days, settings)
    return group_states(group_days, {day.day: day.n_events for day in days}, settings)


class CatalogReplay:
    """Identity and state replayed one day after another in date order, as of the newest day replayed:
    what the replay carries from one day to the next, so that a later day costs one day's work. Its
    `memory()` and `CatalogReplay(settings, *memory)` take it apart into plain values and back, exactly
    (the floats of the signatures included), so a replay kept in a database goes on as if it never
    stopped: the same rows, to the last bit, as replaying every day from the first."""

    def __init__(
        self,
        settings: CatalogSettings = CatalogSettings(),
        newest: str | None = None,
        totals: dict[str, int] | None = None,
        groups: Iterable[dict] = (),
    ) -> None:
        self.settings = settings
        self.newest = newest
        matched, standings = [], {}
        for group in groups:
            matched.append(
                _Group(
                    group["group_id"],
                    group["hint"],
                    deque(group["recent"]),
                    dict(group["summed"]),
                    set(group["templates"]),
                )
            )
            standings[group["group_id"]] = _Standing(
                group["first_seen"],
                group["state"],
                group["last_seen"],
                int(group["absent"]),
                group["label"],
                dict(group["counts"]),
            )
        self._matcher = _Matcher(settings, matched)
        self._judge = _Judge(settings, totals, standings)

    def step(self, day: DayClusters) -> list[tuple]:
        """`day`, later than every day replayed so far, matched and judged: its `STATE_COLUMNS` rows."""
        if self.newest is not None and day.day <= self.newest:
            raise ValueError(f"day {day.day} is not after {self.newest}, the newest day replayed")
        seen = {row[1]: (row[2], row[4]) for row in self._matcher.match(day)}
        self.newest = day.day
        return self._judge.judge(day.day, day.n_events, seen)

    def memory(self) -> tuple[str | None, dict[str, int], list[dict]]:
        """The newest day replayed, the recorded days' events its baseline may still count, and one
        dict per group (`MEMORY_COLUMNS`: its signature's recent days and sum, the templates the index
        files it under, its state, first and last seen, days absent, label and recent events)."""
        groups = []
        for group_id, group in self._matcher.groups.items():
            standing = self._judge.standings[group_id]
            groups.append(
                {
                    "group_id": group_id,
                    "hint": group.hint,
                    "recent": list(group.recent),
                    "summed": group.summed,
                    "templates": sorted(group.templates),
                    "first_seen": standing.first_seen,
                    "state": standing.state,
                    "last_seen": standing.last_seen,
                    "absent": standing.absent,
                    "label": standing.label,
                    "counts": standing.counts,
                }
            )
        return self.newest, dict(self._judge.totals), groups


MEMORY_COLUMNS = [
    "group_id", "hint", "recent", "summed", "templates", "first_seen", "state", "last_seen", "absent",
    "label", "counts",
]  # fmt: skip
