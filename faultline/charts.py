"""Pictures a person would rather look at than read: the largest error groups' share day by day, and
each flagged task type's runs against its learned limit. Each chart is PNG bytes and the numbers drawn.

Drawn with matplotlib's Agg canvas on a Figure of its own (no pyplot): no window, no global state,
so two charts drawn at once in one process never share a figure.
"""

import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

import pandas as pd
from PIL import Image

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# matplotlib is imported where a chart is drawn: it is a quarter of a second of every process that
# loads the definitions and draws nothing.

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DEFAULT_DAYS_SHOWN = 14  # the demo's two weeks, and the limits' fitting window
DEFAULT_GROUPS_SHOWN = 5
DEFAULT_TASK_TYPES_SHOWN = 6
_LEGEND_CHARS = 70
_DPI = 100
_WIDTH_IN = 10  # 1,000 pixels: the UI shows the image in a dialog about that wide


@dataclass(frozen=True)
class Chart:
    """A chart as PNG bytes, the figures it draws (`data`) and, when it has nothing to draw, why
    (`message`, which the picture shows too)."""

    png: bytes
    data: pd.DataFrame
    message: str | None = None


def _plain(text: str, limit: int = _LEGEND_CHARS) -> str:
    """Text from the data as matplotlib draws it literally: one line, shortened, `$` escaped (two of
    them would start a formula)."""
    printable = "".join(character if character.isprintable() else " " for character in str(text))
    line = " ".join(printable.split())
    line = line if len(line) <= limit else line[: limit - 1] + "…"
    return line.replace("$", r"\$")


def _png(figure: "Figure") -> bytes:
    """The figure as a PNG of at most 256 colours: a third of the bytes of a full-colour one, and no
    difference a reader sees (the image goes into the asset's metadata, stored with each run)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    image = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba()).convert("RGB")
    buffer = io.BytesIO()
    image.quantize(256).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _message_chart(title: str, message: str, data: pd.DataFrame) -> Chart:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 2.5), dpi=_DPI)
    axes = figure.add_subplot()
    axes.set_axis_off()
    axes.set_title(title, loc="left")
    axes.text(0.5, 0.5, _plain(message, 200), ha="center", va="center", wrap=True, transform=axes.transAxes)
    return Chart(png=_png(figure), data=data, message=message)


def _group_key(group: Mapping[str, object]) -> str:
    """What names a group across days: its label (the template its messages share), else its hint,
    else its name. Cluster numbers are no key: they are by size, and sizes change from day to day."""
    for field in ("label", "hint", "name"):
        value = str(group.get(field) or "").strip()
        if value:
            return value
    return f"cluster {group.get('cluster_id')}"


def daily_group_shares(
    documents: Iterable[Mapping[str, object]],
    last_day: str,
    days_shown: int = DEFAULT_DAYS_SHOWN,
    groups_shown: int = DEFAULT_GROUPS_SHOWN,
) -> pd.DataFrame:
    """The share (% of the day's error events) of the `groups_shown` largest groups, one row per day
    of the `days_shown` days up to `last_day` that has a report, one column per group.

    `documents` are the per-day report documents (`report_document`: `day` and `groups`, each group
    with `cluster_id`, `share_pct` and `label`). Groups of different days are one group when their
    labels are the same; "largest" is the highest mean share over the days shown (a day without the
    group counts 0). Noise and the other catch-alls (negative cluster ids) are no group of their own.
    """
    if days_shown < 1 or groups_shown < 1:
        raise ValueError(f"days_shown ({days_shown}) and groups_shown ({groups_shown}) must be at least 1")
    last = date.fromisoformat(last_day)
    first = (last - timedelta(days=days_shown - 1)).isoformat()
    shares: dict[str, dict[str, float]] = {}
    for document in documents:
        day = str(document["day"])
        if not first <= day <= last_day:
            continue
        by_group: dict[str, float] = {}
        for group in document.get("groups") or []:
            if int(group["cluster_id"]) < 0:
                continue
            key = _group_key(group)
            # Two clusters of one day with one label are one group to a reader.
            by_group[key] = by_group.get(key, 0.0) + float(group["share_pct"])
        shares[day] = by_group
    days = sorted(shares)
    table = pd.DataFrame([shares[day] for day in days], index=pd.Index(days, name="day"), dtype=float)
    table = table.fillna(0.0)
    if table.empty:
        return table
    # Highest mean share first; a tie goes to the label first in alphabetical order, so the same
    # reports always give the same columns.
    order = sorted(table.columns, key=lambda label: (-table[label].mean(), label))
    return table[order[:groups_shown]].round(2)


def error_share_chart(
    documents: Iterable[Mapping[str, object]],
    last_day: str,
    days_shown: int = DEFAULT_DAYS_SHOWN,
    groups_shown: int = DEFAULT_GROUPS_SHOWN,
) -> Chart:
    """The largest groups' daily share as lines over the days that have a report (see
    `daily_group_shares`); `data` is that table."""
    shares = daily_group_shares(documents, last_day, days_shown, groups_shown)
    title = f"Largest error groups, share of each day's error events, up to {last_day}"
    if len(shares.index) == 0:
        message = (
            f"Nothing to draw: no report in the {days_shown} days up to {last_day}. "
            "Materialize error_cluster_report for those days first."
        )
        return _message_chart(title, message, shares)
    if len(shares.columns) == 0:
        message = (
            f"Nothing to draw: the reports of the {days_shown} days up to {last_day} hold no error group "
            "(no errors, or only noise)."
        )
        return _message_chart(title, message, shares)
    days = pd.to_datetime(shares.index).to_numpy()
    from matplotlib.dates import DateFormatter, DayLocator
    from matplotlib.figure import Figure

    figure = Figure(figsize=(_WIDTH_IN, 5.5), dpi=_DPI, layout="constrained")
    axes = figure.add_subplot()
    for rank, label in enumerate(shares.columns, start=1):
        # Numbered: the legend matches the table, and a label starting with "_" is still shown.
        axes.plot(days, shares[label].to_numpy(), marker="o", linewidth=2, label=f"{rank}. {_plain(label)}")
    axes.set_title(title, loc="left")
    axes.set_ylabel("share of the day's error events (%)")
    axes.set_ylim(0, max(5.0, float(shares.to_numpy().max()) * 1.15))
    axes.grid(True, alpha=0.3)
    # A tick per day, or per few days past ten: the points are days, never hours.
    axes.xaxis.set_major_locator(DayLocator(interval=-(-len(days) // 10)))
    axes.xaxis.set_major_formatter(DateFormatter("%b %d"))
    if len(days) == 1:  # one day: a visible axis around its point rather than a zero-width one
        axes.set_xlim(days[0] - pd.Timedelta(days=1), days[0] + pd.Timedelta(days=1))
    axes.legend(loc="upper left", bbox_to_anchor=(0, -0.08), fontsize=9, frameon=False)
    return Chart(png=_png(figure), data=shares)


def _utc_naive(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True).dt.tz_localize(None)


def recent_alerts(alerts: pd.DataFrame, hours: float) -> pd.DataFrame:
    """The alerts raised within `hours` of the newest one: the latest ticks' findings, whenever those
    ticks were (a chart drawn a week after the demo still shows the demo's alerts)."""
    if hours <= 0:
        raise ValueError(f"hours ({hours}) must be positive")
    if alerts.empty:
        return alerts
    raised = pd.to_datetime(alerts["raised_at"], utc=True)
    return alerts[raised >= raised.max() - pd.Timedelta(hours=hours)].reset_index(drop=True)


def flagged_task_types(
    runs: pd.DataFrame, alerts: pd.DataFrame, task_types_shown: int = DEFAULT_TASK_TYPES_SHOWN
) -> pd.DataFrame:
    """One row per flagged task type, the furthest past its limit first (at most `task_types_shown`):
    its successful runs in `runs`, the mean and upper limit of its newest alert, its flagged runs
    and the longest one's elapsed time as a multiple of the limit.

    `alerts` are the alert store's rows (task_type, run_id, started_at, elapsed_s, upper_limit_s,
    mean_s, raised_at); `runs` the successful runs (task_type, started_at, duration_s), their task
    types named as the alerts name them.
    """
    if task_types_shown < 1:
        raise ValueError(f"task_types_shown ({task_types_shown}) must be at least 1")
    columns = [
        "task_type",
        "runs",
        "mean_s",
        "upper_limit_s",
        "flagged_runs",
        "longest_elapsed_s",
        "times_limit",
    ]
    if alerts.empty:
        return pd.DataFrame(columns=columns)
    newest = alerts.sort_values("raised_at").groupby("task_type", sort=False).last()
    by_type = alerts.groupby("task_type")
    table = pd.DataFrame(
        {
            "runs": runs.groupby("task_type").size().reindex(newest.index, fill_value=0),
            "mean_s": newest["mean_s"].astype(float),
            "upper_limit_s": newest["upper_limit_s"].astype(float),
            "flagged_runs": by_type.size(),
            "longest_elapsed_s": by_type["elapsed_s"].max().astype(float),
        }
    )
    table["times_limit"] = table["longest_elapsed_s"] / table["upper_limit_s"]
    table = table.rename_axis("task_type").reset_index()
    table = table.sort_values(["times_limit", "task_type"], ascending=[False, True], ignore_index=True)
    return table.head(task_types_shown)[columns].round({"mean_s": 1, "upper_limit_s": 1, "times_limit": 2})


def _unit(seconds: float) -> tuple[str, float]:
    if seconds >= 2 * 3600:
        return "h", 3600.0
    if seconds >= 120:
        return "min", 60.0
    return "s", 1.0


def duration_limit_chart(
    runs: pd.DataFrame, alerts: pd.DataFrame, task_types_shown: int = DEFAULT_TASK_TYPES_SHOWN
) -> Chart:
    """Per flagged task type (see `flagged_task_types`, whose table is `data`) a panel: its successful
    runs' durations over the time they started, its mean and upper limit, and each flagged running
    task at the time it started, as long as it had run when it was flagged."""
    table = flagged_task_types(runs, alerts, task_types_shown)
    title = "Running tasks past their limit, against the runs the limit was learned from"
    if table.empty:
        return _message_chart(
            title, "Nothing to draw: no running task has been flagged past its limit.", table
        )
    n_columns = 1 if len(table) == 1 else 2
    n_rows = -(-len(table) // n_columns)
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure

    figure = Figure(figsize=(_WIDTH_IN / 2 * n_columns, 3.2 * n_rows + 0.6), dpi=_DPI, layout="constrained")
    figure.suptitle(title)
    panels = figure.subplots(n_rows, n_columns, squeeze=False).ravel()
    for axes, row in zip(panels, table.itertuples(index=False), strict=False):
        unit, per = _unit(max(row.upper_limit_s, row.longest_elapsed_s))
        own = runs[runs["task_type"] == row.task_type]
        flagged = alerts[alerts["task_type"] == row.task_type]
        axes.scatter(
            _utc_naive(own["started_at"]).to_numpy(),
            own["duration_s"].to_numpy(dtype=float) / per,
            s=8, alpha=0.5, color="tab:blue", label=f"successful runs ({len(own)})",
        )  # fmt: skip
        axes.axhline(
            row.mean_s / per, color="tab:green", linewidth=1.5, label=f"mean {row.mean_s / per:.1f} {unit}"
        )
        axes.axhline(
            row.upper_limit_s / per, color="tab:red", linestyle="--", linewidth=1.5,
            label=f"upper limit {row.upper_limit_s / per:.1f} {unit}",
        )  # fmt: skip
        axes.scatter(
            _utc_naive(flagged["started_at"]).to_numpy(),
            flagged["elapsed_s"].to_numpy(dtype=float) / per,
            s=90, marker="X", color="tab:red", zorder=3,
            label=f"flagged, running ({len(flagged)}): {row.times_limit:.1f}x the limit",
        )  # fmt: skip
        axes.set_title(_plain(row.task_type, 60), loc="left", fontsize=10)
        axes.set_ylabel(f"duration ({unit})")
        axes.set_ylim(bottom=0)
        locator = AutoDateLocator(minticks=3, maxticks=6)
        axes.xaxis.set_major_locator(locator)
        axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=7, loc="upper left")
    for axes in panels[len(table) :]:
        axes.set_axis_off()
    return Chart(png=_png(figure), data=table)
