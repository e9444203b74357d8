"""The cluster report: the day's error groups, biggest first, each described so a person can act.

A group is described by its share of all error events, a label (the template its messages share,
with the parts that vary as `<*>`), three example messages and the terms that set it apart.
"""

import difflib
import math
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from faultline.cleaning import (
    DEFAULT_PROFILE,
    PLACEHOLDER_WORDS,
    Corpus,
    first_line,
    mask_variable_parts,
    profile_named,
)
from faultline.clustering import NO_TEXT, NOISE, NOT_VECTORIZED, event_weights
from faultline.redaction import redact_secrets

WILDCARD = "<*>"
_LABEL_SOURCES = 50  # distinct messages folded into a label; more changes nothing but the time
# Characters of each message's first line that are folded: folding two lines costs up to the product
# of their lengths, and a label shows 240 characters. The corpus keeps 1,000 of each line.
_LABEL_SOURCE_CHARS = 1_000
_MAX_LABEL_CHARS = 240
_MAX_EXAMPLE_CHARS = 2_000
_MAX_SHOWN_CHARS = 300
REPORT_COLUMNS = ["cluster_id", "name", "share_pct", "n_events", "label", "hint", "examples", "terms"]


@dataclass(frozen=True)
class ClusterReport:
    """One row per group (clusters biggest first, then noise, then messages with no text); `profile`
    names the platform rules the messages were cleaned by, which show each example's user part."""

    groups: pd.DataFrame
    n_events: int
    n_clusters: int
    noise_share: float
    top_cluster_share: float
    profile: str = DEFAULT_PROFILE


def _fold(template: list[str], tokens: list[str]) -> list[str]:
    """Keep the tokens both share in order; each stretch where they differ becomes one wildcard."""
    folded: list[str] = []
    matcher = difflib.SequenceMatcher(None, template, tokens, autojunk=False)
    for tag, start, end, _, _ in matcher.get_opcodes():
        if tag == "equal":
            folded.extend(template[start:end])
        elif not folded or folded[-1] != WILDCARD:
            folded.append(WILDCARD)
    return folded


def message_template(messages: pd.Series, counts: pd.Series | None = None) -> str:
    """What the messages share, variable parts as `<*>` (most frequent messages weigh first).

    Each message counts once, or `counts` times where given (a row standing for many events).
    """
    weights = pd.Series(1, index=messages.index, dtype=np.int64) if counts is None else counts
    # Masked once per distinct message, then counted per masked line. Lines seen as often go in the
    # order they first appear (a stable sort), so the label never depends on a sort's tie-breaking.
    message_counts = weights.groupby(messages, sort=False).sum()
    lines = message_counts.index.map(
        lambda text: mask_variable_parts(first_line(text)[:_LABEL_SOURCE_CHARS], placeholder=WILDCARD)
    )
    distinct = (
        message_counts.groupby(lines, sort=False)
        .sum()
        .sort_values(ascending=False, kind="stable")
        .index[:_LABEL_SOURCES]
    )
    if len(distinct) == 0:
        return ""
    template = distinct[0].split()
    for line in distinct[1:]:
        template = _fold(template, line.split())
    label = " ".join(template)
    return label if len(label) <= _MAX_LABEL_CHARS else label[: _MAX_LABEL_CHARS - 1] + "…"


def distinctive_terms(clustered: pd.DataFrame, n_terms: int = 5) -> dict[int, list[str]]:
    """Per cluster, the words most specific to it (class-based TF-IDF over the cleaned texts)."""
    in_clusters = clustered[clustered["cluster_id"] >= 0]
    keys = [in_clusters["cluster_id"], in_clusters["cleaned"]]
    text_counts = event_weights(in_clusters).groupby(keys).sum()
    term_counts: dict[int, Counter[str]] = {}
    for (cluster_id, text), n in text_counts.items():
        counts = term_counts.setdefault(int(cluster_id), Counter())
        counts.update({word: n for word in text.split() if word not in PLACEHOLDER_WORDS})
    if not term_counts:
        return {}
    overall: Counter[str] = Counter()
    for counts in term_counts.values():
        overall.update(counts)
    average_words = sum(overall.values()) / len(term_counts)
    terms = {}
    for cluster_id, counts in term_counts.items():
        total = sum(counts.values()) or 1
        scores = {
            word: (n / total) * math.log(1 + average_words / overall[word]) for word, n in counts.items()
        }
        terms[cluster_id] = [
            word for word, _ in sorted(scores.items(), key=lambda item: (-item[1], item[0]))
        ][:n_terms]
    return terms


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _examples(members: pd.DataFrame, n_examples: int = 3) -> list[str]:
    """Raw (redacted) messages of the group's most frequent variants, one per variant."""
    raw = members["message"] if "message" in members else members["error_text"]
    first_of_variant = raw.groupby(members["error_text"], sort=False).first()
    variants = (
        event_weights(members)
        .groupby(members["error_text"], sort=False)
        .sum()
        .sort_values(ascending=False, kind="stable")
        .index[:n_examples]
    )
    return [_shorten(first_of_variant[variant], _MAX_EXAMPLE_CHARS) for variant in variants]


def _hint_template(members: pd.DataFrame, profile: str) -> str:
    """What the members' hints share: merged clusters are often worded apart but diagnosed alike."""
    if "hint_text" in members:
        hints = members["hint_text"]
    elif "message" in members:
        text_and_hint = profile_named(profile).user_text_and_hint
        hints = members["message"].map(lambda message: text_and_hint(message)[1])
    else:
        return ""
    given = hints != ""
    return message_template(hints[given], event_weights(members)[given])


def report_rows(corpus: Corpus, clusters: pd.DataFrame) -> pd.DataFrame:
    """The clustered events as one row per variant, hint and cluster, with `n_events`: what the report
    needs (the variant's `error_text`, `cleaned` text, first `message` and `first_lines`, the raw
    `hint_text`)."""
    rows = clusters.groupby(["variant", "hint", "cluster_id"]).size().rename("n_events").reset_index()
    variant, hint = rows["variant"].to_numpy(), rows["hint"].to_numpy()
    for column in ("error_text", "cleaned", "message", "first_lines"):
        rows[column] = corpus.variants[column].to_numpy()[variant]
    rows["hint_text"] = corpus.hints["hint"].to_numpy()[hint]
    return rows


@dataclass(frozen=True)
class ClusteredEvents:
    """The day's events with their cluster (`events`: `row_id`, `event_index`, `variant`, `hint`,
    `cluster_id`), and the same as `report_rows` for the report. Made in one step from one corpus,
    so a report never pairs clusters with the variants of another materialization of the corpus.
    `n_dbscan_clusters` is how many clusters DBSCAN found, before the hint merge; `profile` the
    corpus' platform rules, which the report shows examples by."""

    events: pd.DataFrame
    report_rows: pd.DataFrame
    n_dbscan_clusters: int
    profile: str = DEFAULT_PROFILE


def _label(members: pd.DataFrame) -> str:
    """What the members' user-facing texts share: a few first lines of each variant where known,
    each weighing its share of the variant's events; else each row's text."""
    if "first_lines" not in members:
        return message_template(members["error_text"], event_weights(members))
    lines = members["first_lines"].explode()
    weights = (event_weights(members) / members["first_lines"].map(len)).reindex(lines.index)
    return message_template(lines.astype(str).reset_index(drop=True), weights.reset_index(drop=True))


_GROUP_NAMES = {
    NOISE: "noise",
    NO_TEXT: "no text after cleaning",
    NOT_VECTORIZED: "rare templates, not vectorized (past max_templates or max_words)",
}


def build_cluster_report(clustered: pd.DataFrame, profile: str = DEFAULT_PROFILE) -> ClusterReport:
    """Summarize rows with `cluster_id`, `error_text` and `cleaned` (and `message`, `hint_text`,
    `first_lines`) into the report's groups. A row is one event, or stands for `n_events` events.
    `profile` names the platform rules the messages were cleaned by: what of an example a user reads."""
    profile_named(profile)  # an unknown name fails here, naming the choices, not where a row is shown
    weights = event_weights(clustered)
    n_events = int(weights.sum())
    terms = distinctive_terms(clustered)
    rows = []
    for cluster_id, members in clustered.groupby("cluster_id"):
        cluster_id = int(cluster_id)
        is_cluster = cluster_id >= 0
        name = _GROUP_NAMES.get(cluster_id, f"cluster {cluster_id}")
        size = int(event_weights(members).sum())
        rows.append(
            (
                cluster_id,
                name,
                round(100.0 * size / n_events, 2),
                size,
                _label(members) if is_cluster else "",
                _hint_template(members, profile) if is_cluster else "",
                _examples(members),
                terms.get(cluster_id, []),
            )
        )
    groups = pd.DataFrame(rows, columns=REPORT_COLUMNS)
    clusters = groups[groups["cluster_id"] >= 0].sort_values(
        ["n_events", "cluster_id"], ascending=[False, True]
    )
    # Noise, empty texts, then templates not vectorized, last whatever their size: they qualify the
    # clusters' shares.
    others = groups[groups["cluster_id"] < 0].sort_values("cluster_id", ascending=False)
    groups = pd.concat([clusters, others], ignore_index=True)
    noise = int(weights[clustered["cluster_id"] == NOISE].sum())
    return ClusterReport(
        groups=groups,
        n_events=n_events,
        n_clusters=len(clusters),
        noise_share=noise / n_events if n_events else 0.0,
        top_cluster_share=float(clusters["n_events"].max() / n_events) if len(clusters) else 0.0,
        profile=profile,
    )


def report_document(report: ClusterReport, day: str, report_file: str) -> dict[str, object]:
    """The report as the JSON file holds it: the day, where its markdown is, the figures and groups."""
    return {
        "day": day,
        "report_file": report_file,
        "n_events": report.n_events,
        "n_clusters": report.n_clusters,
        "noise_share": report.noise_share,
        "groups": report.groups.to_dict(orient="records"),
    }


def markdown_table(frame: pd.DataFrame) -> str:
    """Any small frame as a markdown table, for metadata a person reads in the Dagster UI."""
    if frame.empty:
        return "(none)"
    header = "| " + " | ".join(_cell(str(name)) for name in frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = [
        "| " + " | ".join(_cell(str(value)) for value in row) + " |" for row in frame.itertuples(index=False)
    ]
    return "\n".join([header, rule, *rows])


# What ends a line in a markdown renderer or in Python's splitlines, and the other control characters.
_LINE_BREAKS = re.compile(r"\r\n|[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]")
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
# What makes markup inside a table cell (its inline markdown): links and images need `[`, raw HTML
# and autolinks `<`, entities `&`, emphasis `*` and `_`, code spans a backtick, strikethrough `~`;
# a pipe ends the cell, and a backslash would escape the next one. Each is shown as itself by a
# backslash before it (CommonMark escapes any ASCII punctuation so). Block markup (headings, lists)
# cannot start inside a cell.
_MARKUP = re.compile(r"[\\`*_\[\]~|<&]")


def _cell(text: str) -> str:
    """`text` as one table cell that shows it as it is: on one line, control characters shown as
    U+FFFD, every character that would make markup (a link, an image, HTML, emphasis) or end the
    cell escaped."""
    text = _CONTROL_CHARACTERS.sub("\ufffd", _LINE_BREAKS.sub(" ", text))
    return _MARKUP.sub(r"\\\g<0>", text)


def report_markdown(report: ClusterReport, title: str, max_groups: int = 30) -> str:
    """The report as a markdown document: a summary line and one table row per group."""
    if report.n_events == 0:
        return f"# {title}\n\nNo error events on this day: nothing to cluster.\n"
    lines = [
        f"# {title}",
        "",
        f"{report.n_events} error events, {report.n_clusters} clusters, "
        f"noise {100 * report.noise_share:.1f}%.",
        "",
        "| group | share | events | label | hint | examples | distinctive terms |",
        "|---|---:|---:|---|---|---|---|",
    ]
    groups = report.groups
    clusters, others = groups[groups["cluster_id"] >= 0], groups[groups["cluster_id"] < 0]
    lines.extend(
        _markdown_row(row, report.profile) for row in clusters.head(max_groups).itertuples(index=False)
    )
    if len(clusters) > max_groups:
        rest = clusters.iloc[max_groups:]
        share, events = rest["share_pct"].sum(), rest["n_events"].sum()
        lines.append(f"| {len(rest)} smaller clusters | {share:.2f}% | {events} | | | | |")
    # Noise, empty texts and templates not vectorized always show, however small: they qualify every
    # share above.
    lines.extend(_markdown_row(row, report.profile) for row in others.itertuples(index=False))
    return "\n".join(lines) + "\n"


def _shown_examples(examples: list[str], profile: str) -> list[str]:
    # A table cell shows the part of each raw example a user reads, by the profile the messages were
    # cleaned by (Qovery's framing off, or a generic message as written); the JSON report has them whole.
    text_of = profile_named(profile).user_text_and_hint
    return [_shorten(" ".join(text_of(example)[0].split()), _MAX_SHOWN_CHARS) for example in examples]


def _markdown_row(row, profile: str) -> str:
    shown = _shown_examples(row.examples, profile)
    examples = "<br>".join(f"{n}. {_cell(text)}" for n, text in enumerate(shown, start=1))
    cells = [
        row.name,
        f"{row.share_pct:.2f}%",
        str(row.n_events),
        _cell(row.label),
        _cell(row.hint),
        examples,
    ]
    return "| " + " | ".join(cells) + f" | {_cell(', '.join(row.terms))} |"


# Between a group's examples in a plain-text table cell, which shows no line break.
EXAMPLE_SEPARATOR = "  ·  "


def _plain(text: str) -> str:
    """`text` on one line for a plain-text table cell: line breaks as spaces, control characters as
    U+FFFD. Nothing is escaped: such a cell shows its text as it is."""
    return _CONTROL_CHARACTERS.sub("\ufffd", _LINE_BREAKS.sub(" ", text))


def report_table(report: ClusterReport, max_groups: int = 30) -> pd.DataFrame:
    """The report's groups as a table of plain text and numbers (one row per group, as in the markdown:
    the `max_groups` biggest clusters, the rest summed in one row, then noise, no text and not
    vectorized), for a table that shows each cell as it is, `<*>` and all."""
    groups = report.groups
    clusters, others = groups[groups["cluster_id"] >= 0], groups[groups["cluster_id"] < 0]
    shown = [clusters.head(max_groups)]
    if len(clusters) > max_groups:
        rest = clusters.iloc[max_groups:]
        summed = {
            "name": f"{len(rest)} smaller clusters",
            "share_pct": rest["share_pct"].sum(),
            "n_events": rest["n_events"].sum(),
            "label": "",
            "hint": "",
            "examples": [],
            "terms": [],
        }
        shown.append(pd.DataFrame([summed]))
    shown.append(others)
    rows = pd.concat(shown, ignore_index=True)
    return pd.DataFrame(
        {
            "group": rows["name"].astype(str),
            "share_pct": rows["share_pct"].astype(float).round(2),
            "events": rows["n_events"].astype("int64"),
            "label": rows["label"].map(_plain),
            "hint": rows["hint"].map(_plain),
            "examples": rows["examples"].map(
                lambda examples: EXAMPLE_SEPARATOR.join(
                    f"{n}. {_plain(text)}"
                    for n, text in enumerate(_shown_examples(examples, report.profile), start=1)
                )
            ),
            "terms": rows["terms"].map(lambda terms: _plain(", ".join(terms))),
        }
    )


TableCell = str | int | float | bool | None


def table_columns(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """Each column's name and the kind of its values (`bool`, `int`, `float`, else `string`), as a
    table schema gives them."""
    kinds = []
    for name, dtype in frame.dtypes.items():
        if pd.api.types.is_bool_dtype(dtype):
            kind = "bool"
        elif pd.api.types.is_integer_dtype(dtype):
            kind = "int"
        elif pd.api.types.is_float_dtype(dtype):
            kind = "float"
        else:
            kind = "string"
        kinds.append((str(name), kind))
    return kinds


def table_records(frame: pd.DataFrame, digits: int = 4) -> list[dict[str, TableCell]]:
    """The frame's rows as plain values: floats rounded to `digits` (a missing one is None), ints and
    bools as Python's, anything else as its text on one line."""
    kinds = dict(table_columns(frame))
    records = []
    for row in frame.to_dict(orient="records"):
        record: dict[str, TableCell] = {}
        for name, value in row.items():
            kind = kinds[str(name)]
            if kind == "float":
                record[str(name)] = None if pd.isna(value) else round(float(value), digits)
            elif kind == "int":
                record[str(name)] = int(value)
            elif kind == "bool":
                record[str(name)] = bool(value)
            else:
                record[str(name)] = None if value is None else _plain(str(value))
        records.append(record)
    return records


GROUP_ALERT_COLUMNS = ["group_id", "day", "state", "text", "n_events", "share", "expected_events"]
GROUP_TABLE_COLUMNS = [
    "group", "state", "first_seen", "events", "share_pct", "expected", "trend", "trend_counts", "label",
]  # fmt: skip
# The order a day's groups are listed in: what changed first, then the rest by size.
_STATE_ORDER = {"new": 0, "escalating": 1, "regressed": 2, "resolved": 3, "ongoing": 4}


_SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(counts: list[int]) -> str:
    """Counts as bars of eight heights, the highest the tallest; a day with none shows as `·`."""
    top = max(counts, default=0)
    return "".join(
        "·" if n <= 0 else _SPARKS[min(len(_SPARKS) - 1, math.ceil(n / top * len(_SPARKS)) - 1)]
        for n in counts
    )


def groups_of_day(states: pd.DataFrame, day: str, trend_days: int = 7) -> pd.DataFrame:
    """The groups a day's report lists (seen that day, or resolved that day), from the catalog's
    states (`faultline.catalog.STATE_COLUMNS`), what changed first, each with its state, first seen
    and its events on the last `trend_days` recorded days (a sparkline and the numbers)."""
    recorded = sorted(d for d in states["day"].unique() if d <= day)[-trend_days:]
    counts = states[states["day"].isin(recorded)].pivot_table(
        index="group_id", columns="day", values="n_events", aggfunc="sum", fill_value=0
    )
    counts = counts.reindex(columns=recorded, fill_value=0)
    today = states[(states["day"] == day) & ((states["n_events"] > 0) | states["changed"])]
    today = today.assign(order=today["state"].map(_STATE_ORDER).where(today["changed"], 4))
    today = today.sort_values(["order", "n_events", "group_id"], ascending=[True, False, True])
    trends = [[int(n) for n in counts.loc[group_id]] for group_id in today["group_id"]]
    return pd.DataFrame(
        {
            "group": today["group_id"].astype(str).to_numpy(),
            "state": today["state"].astype(str).to_numpy(),
            "first_seen": today["first_seen"].astype(str).to_numpy(),
            "events": today["n_events"].astype("int64").to_numpy(),
            "share_pct": (100 * today["share"]).astype(float).round(2).to_numpy(),
            "expected": today["expected_events"].astype(float).round(1).to_numpy(),
            "trend": [sparkline(trend) for trend in trends],
            "trend_counts": [" ".join(str(n) for n in trend) for trend in trends],
            "label": today["label"].map(_plain).to_numpy(),
        },
        columns=GROUP_TABLE_COLUMNS,
    )


def _change_line(row) -> str:
    """What changed for one group, with its numbers: `new: g1a2b3c4d 'label': 45 events (...)`."""
    label = _shorten(_plain(row.label), 120)
    if row.state == "new":
        numbers = f"{row.n_events} events ({100 * row.share:.2f}% of the day's errors), first seen today"
    elif row.state == "escalating":
        numbers = (
            f"{row.n_events} events ({100 * row.share:.2f}%), {row.n_events / row.expected_events:.1f}x "
            f"the {row.expected_events:.1f} its share of the days before gives (p = {row.p_value:.1g})"
        )
    elif row.state == "regressed":
        numbers = f"{row.n_events} events ({100 * row.share:.2f}%), back after being resolved"
    else:
        numbers = f"no events since {row.last_seen}, first seen {row.first_seen}"
    return f"{row.state}: {row.group_id} {label!r}: {numbers}"


def _changes(states: pd.DataFrame, day: str) -> pd.DataFrame:
    changed = states[(states["day"] == day) & states["changed"]]
    changed = changed.assign(order=changed["state"].map(_STATE_ORDER))
    return changed.sort_values(["order", "n_events", "group_id"], ascending=[True, False, True])


def change_lines(states: pd.DataFrame, day: str) -> list[str]:
    """One line per group that changed on `day`, new, escalating, regressed, resolved in that order,
    each with its numbers; none when nothing changed."""
    return [_change_line(row) for row in _changes(states, day).itertuples(index=False)]


def changes_markdown(states: pd.DataFrame, day: str) -> str:
    """What changed on `day` as a markdown list, each line shown as it is (`<*>` and all)."""
    changes = change_lines(states, day)
    if not changes:
        return "Nothing: no group is new, escalating, regressed or resolved."
    return "\n".join(f"- {_cell(line)}" for line in changes)


def group_report_markdown(states: pd.DataFrame, day: str, title: str, trend_days: int = 7) -> str:
    """The day's groups across days as markdown: what changed first, then every group of the day with
    its state, first seen and trend."""
    lines = [f"# {title}", "", "## What changed", ""]
    lines.append(changes_markdown(states, day))
    table = groups_of_day(states, day, trend_days)
    lines += [
        "",
        "## Groups",
        "",
        f"| group | state | first seen | events | share | expected | last {trend_days} days | label |",
        "|---|---|---|---:|---:|---:|---|---|",
    ]
    lines.extend(
        f"| {row.group} | {row.state} | {row.first_seen} | {row.events} | {row.share_pct:.2f}% | "
        f"{row.expected:.1f} | {row.trend} {row.trend_counts} | {_cell(row.label)} |"
        for row in table.itertuples(index=False)
    )
    return "\n".join(lines) + "\n"


def group_alerts(
    states: pd.DataFrame, day: str, alert_states: tuple[str, ...] = ("new", "escalating")
) -> pd.DataFrame:
    """An alert per group that entered one of `alert_states` on `day` (none on the first recorded day):
    its id, day, state, numbers and one line of text (the change's line in the report, redacted once
    more as a whole)."""
    changed = _changes(states, day)
    # On the catalog's first day every group is new: that is the catalog starting, not news.
    if day == states["day"].min():
        changed = changed.iloc[:0]
    changed = changed[changed["state"].isin(alert_states)]
    rows = [
        {
            "group_id": row.group_id,
            "day": day,
            "state": row.state,
            "text": redact_secrets(f"Deployment errors on {day}: {_change_line(row)}"),
            "n_events": int(row.n_events),
            "share": round(float(row.share), 6),
            "expected_events": float(row.expected_events),
        }
        for row in changed.itertuples(index=False)
    ]
    return pd.DataFrame(rows, columns=GROUP_ALERT_COLUMNS)


def changes_by_day(states: pd.DataFrame) -> list[str]:
    """Every recorded day after the first with what changed on it, a line per change: the story the
    catalog tells (the first day, where every group is new, is the catalog starting)."""
    days = sorted(states["day"].unique())[1:]
    return [f"{day}: {line}" for day in days for line in change_lines(states, day)]
