"""The report: shares of all error events, template labels, examples and distinctive terms."""

from html.parser import HTMLParser

import pandas as pd
import pytest
from markdown_it import MarkdownIt

from faultline.cleaning import build_corpus
from faultline.clustering import NO_TEXT, NOISE, NOT_VECTORIZED
from faultline.pipeline import cluster_corpus, report_clusters, vectorize_corpus
from faultline.report import (
    EXAMPLE_SEPARATOR,
    ClusterReport,
    _cell,
    build_cluster_report,
    markdown_table,
    message_template,
    report_markdown,
    report_rows,
    report_table,
    table_columns,
    table_records,
)


def clustered(rows: list[tuple[int, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["cluster_id", "error_text", "cleaned"])


def test_label_keeps_what_the_messages_share_and_wildcards_the_rest():
    messages = pd.Series(
        [
            "Readiness probe failed on port 8080 for shop-api",
            "Readiness probe failed on port 3000 for billing",
            "Readiness probe failed on port 8080 for shop-api",
        ]
    )
    assert message_template(messages) == "Readiness probe failed on port <*> for <*>"


def test_label_folds_messages_of_different_lengths():
    messages = pd.Series(["push denied for image app:1", "push denied: too many requests for image app:2"])
    assert message_template(messages) == "push <*> for image <*>"


def test_label_of_one_message_still_hides_its_variable_parts():
    assert message_template(
        pd.Series(["clone of https://github.com/a/b.git failed at 2024-01-01T00:00:00Z"])
    ) == ("clone of <*> failed at <*>")


def test_label_is_built_from_the_first_line_only():
    assert message_template(pd.Series(["disk full\n\nHint: free space"])) == "disk full"


def test_groups_come_biggest_first_with_their_share_of_all_events():
    rows = (
        [(1, "image push denied", "image push denied")] * 2
        + [(0, "disk full on node", "disk full node")] * 5
        + [(NOISE, "odd one", "odd")] * 2
        + [(NO_TEXT, "---", "")]
    )
    report = build_cluster_report(clustered(rows))
    assert report.groups["name"].tolist() == ["cluster 0", "cluster 1", "noise", "no text after cleaning"]
    assert report.groups["share_pct"].tolist() == [50.0, 20.0, 20.0, 10.0]
    assert report.groups["n_events"].tolist() == [5, 2, 2, 1]
    assert report.n_events == 10 and report.n_clusters == 2
    assert report.noise_share == 0.2 and report.top_cluster_share == 0.5


def test_examples_are_raw_messages_of_the_most_frequent_variants():
    rows = [(0, "a 1", "a")] * 3 + [(0, "a 2", "a")] * 2 + [(0, "a 3", "a"), (0, "a 4", "a")]
    events = clustered(rows)
    events["message"] = [f"TEAM SECTION {i}\n{text}" for i, text in enumerate(events["error_text"])]
    report = build_cluster_report(events)
    assert report.groups.loc[0, "examples"] == [
        "TEAM SECTION 0\na 1",
        "TEAM SECTION 3\na 2",
        "TEAM SECTION 5\na 3",
    ]


def test_every_markdown_row_has_a_cell_per_column():
    rows = [(0, "a | b failed", "failed")] * 6 + [(1, "disk full", "disk full")] * 2 + [(NOISE, "odd", "odd")]
    markdown = report_markdown(build_cluster_report(clustered(rows)), title="Errors", max_groups=1)
    table = [line for line in markdown.splitlines() if line.startswith("|")]
    cells = [len(line.replace("\\|", "").split("|")) for line in table]
    assert len(table) == 5 and len(set(cells)) == 1


def test_distinctive_terms_favour_words_found_in_one_cluster_only():
    rows = [(0, "x", "disk full node")] * 3 + [(1, "y", "image push denied node")] * 3
    terms = build_cluster_report(clustered(rows)).groups.set_index("cluster_id")["terms"]
    assert terms[0][:2] == ["disk", "full"] and "node" == terms[0][-1]
    assert set(terms[1][:3]) == {"image", "push", "denied"}


def test_markdown_report_has_a_row_per_group_and_escapes_pipes():
    rows = [(0, "a | b failed", "failed")] * 2 + [(NOISE, "odd", "odd")]
    markdown = report_markdown(build_cluster_report(clustered(rows)), title="Errors")
    assert "3 error events, 1 clusters, noise 33.3%." in markdown
    assert "| cluster 0 | 66.67% | 2 | a \\| b failed |" in markdown
    assert "| noise | 33.33% | 1 |" in markdown


def test_an_empty_day_gives_a_report_that_says_so():
    report = build_cluster_report(clustered([]))
    assert report.n_events == 0 and report.groups.empty
    assert "No error events on this day" in report_markdown(report, title="Errors")


def test_a_report_of_variants_counts_each_event_and_shows_one_example_per_variant():
    messages = [
        "push denied for image shop:1",
        "push denied for image shop:2",
        "push denied: quota exceeded for image api:3",
        "odd one",
        "push denied for image shop:4",
    ]
    corpus = build_corpus(pd.DataFrame({"row_id": range(5), "event_index": 0, "message": messages}))
    clusters = corpus.events.assign(cluster_id=[0, 0, 0, NOISE, 0])
    rows = report_rows(corpus, clusters)
    assert len(rows) == 3 and rows["n_events"].tolist() == [3, 1, 1]
    report = build_cluster_report(rows)
    assert report.n_events == 5 and report.groups["n_events"].tolist() == [4, 1]
    assert report.noise_share == 0.2 and report.top_cluster_share == 0.8
    # The variant of three events first, with its first message; then the other.
    assert report.groups.loc[0, "examples"] == [messages[0], messages[2]]
    assert report.groups.loc[0, "label"] == "push <*> for image <*>"


def test_a_label_shows_as_wildcards_what_varies_within_a_variant():
    messages = [f"Container exited with exit code {code} on node worker-{node}" for code in (137, 1, 2, 139)
                for node in range(1, 7)]  # fmt: skip
    corpus = build_corpus(pd.DataFrame({"row_id": range(24), "event_index": 0, "message": messages}))
    assert len(corpus.variants) == 1  # the digits make both variable parts `<*>` in the tokens
    report = build_cluster_report(report_rows(corpus, corpus.events.assign(cluster_id=0)))
    assert report.groups.loc[0, "label"] == "Container exited with exit code <*> on node <*>"
    assert report.groups.loc[0, "examples"] == [messages[0]]


def test_templates_not_vectorized_are_a_line_of_their_own_after_noise():
    report = build_cluster_report(
        clustered([(0, "disk full", "disk full"), (NOT_VECTORIZED, "rare", "rare"), (NOISE, "odd", "odd")])
    )
    assert report.groups["cluster_id"].tolist() == [0, NOISE, NOT_VECTORIZED]
    assert report.groups.loc[2, "name"] == "rare templates, not vectorized (past max_templates or max_words)"
    assert report.groups.loc[2, "share_pct"] == 33.33 and report.n_clusters == 1
    assert "rare templates, not vectorized" in report_markdown(report, "day")


def test_a_label_folds_the_first_thousand_characters_of_each_line():
    long_line = "disk full on " + "x " * 5_000
    label = message_template(pd.Series([long_line, long_line.replace("disk", "pod")]))
    assert label == message_template(pd.Series([long_line[:1_000], long_line[:1_000].replace("disk", "pod")]))
    assert label.startswith("<*> full on x x")


def test_pipes_are_escaped_with_the_backslashes_before_them():
    assert _cell("a|b") == "a\\|b"
    assert _cell("a\\|b") == "a\\\\\\|b"
    assert _cell("\\\\ no pipe \\") == "\\\\\\\\ no pipe \\\\"


# Text from the data that a markdown renderer would turn into markup: links and images that hide
# where they point, raw HTML, autolinks, entities, emphasis, code, strikethrough, a cell's end.
MARKUP = [
    "[click here](http://evil.example/login)",
    "![pixel](http://evil.example/track.png)",
    "[ref link][1]\n\n[1]: http://evil.example",
    '<img src=x onerror="alert(1)"> <script>alert(1)</script> <a href="http://evil.example">x</a>',
    "<http://evil.example/auto> <user@evil.example>",
    "&lt;b&gt; &amp; &#60;i&#62; &copy;",
    "**bold** __bold__ *it* _it_ `code` ``co`de`` ~~gone~~ ~gone~",
    "a \\| b \\\\| c | d \\",
    "\\[not a link\\](x) \\<b>",
    "<!-- hidden --> <br> </td></tr>",
]


class _Html(HTMLParser):
    """The tags of rendered HTML, and the text of each table cell as a reader sees it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.cells: list[str] = []
        self._in_cell = False

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if tag in ("td", "th"):
            self.cells.append("")
            self._in_cell = True
        elif tag == "br" and self._in_cell:
            self.cells[-1] += "\n"

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._in_cell = False

    def handle_data(self, data):
        if self._in_cell:
            self.cells[-1] += data

    def handle_comment(self, data):
        self.tags.add("<!-- comment -->")


def rendered(markdown: str) -> _Html:
    # CommonMark with GFM's tables and strikethrough, raw HTML allowed: the most a viewer renders.
    renderer = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
    html = _Html()
    html.feed(renderer.render(markdown))
    return html


TABLE_TAGS = {"table", "thead", "tbody", "tr", "th", "td"}


@pytest.mark.parametrize("text", MARKUP)
def test_a_table_cell_shows_its_text_as_it_is_and_makes_no_markup(text):
    html = rendered(markdown_table(pd.DataFrame({"excerpt": [text], "reason": ["r"]})))
    assert html.tags == TABLE_TAGS
    assert html.cells == ["excerpt", "reason", " ".join(text.split("\n")).replace("\n", " "), "r"]


def test_a_report_shows_labels_hints_and_examples_as_they_are_and_makes_no_markup():
    rows = clustered([(i, text, f"word{i}") for i, text in enumerate(MARKUP)])
    rows["message"], rows["hint_text"] = rows["error_text"], MARKUP[0]
    html = rendered(report_markdown(build_cluster_report(rows), title="Errors"))
    # <br> between examples is the report's own; nothing else but the table.
    assert html.tags - {"br"} == TABLE_TAGS | {"h1", "p"}
    shown = " ".join(html.cells)
    for text in MARKUP:
        assert " ".join(text.split()) in " ".join(shown.split()), text


def test_the_report_table_shows_labels_hints_and_examples_as_plain_text_with_each_group_named():
    """What the UI's table metadata shows, cell by cell as text (no markdown): `<*>` and markup as they
    are, examples numbered on one line, shares rounded, and the groups that are not clusters named."""
    messages = ["Build of app <b>1</b> failed *now*", "Build of app <b>2</b> failed *now*"]
    rows = clustered([(0, text, "build app failed") for text in messages] + [(NOISE, "odd", "odd")])
    rows = pd.concat([rows, clustered([(NO_TEXT, "---", ""), (NOT_VECTORIZED, "rare one", "rare")])])
    rows["message"] = rows["error_text"]
    rows["hint_text"] = ["Hint: check the\nDockerfile", "Hint: check the\nDockerfile", "", "", ""]
    table = report_table(build_cluster_report(rows.reset_index(drop=True)))
    assert table["group"].tolist() == [
        "cluster 0",
        "noise",
        "no text after cleaning",
        "rare templates, not vectorized (past max_templates or max_words)",
    ]
    assert table["share_pct"].tolist() == [40.0, 20.0, 20.0, 20.0]
    assert table["events"].tolist() == [2, 1, 1, 1]
    cluster = table.iloc[0]
    assert cluster["label"] == "Build of app <*> failed *now*"
    assert cluster["hint"] == "Hint: check the"
    assert cluster["examples"] == (
        f"1. Build of app <b>1</b> failed *now*{EXAMPLE_SEPARATOR}2. Build of app <b>2</b> failed *now*"
    )
    assert table.iloc[1]["examples"] == "1. odd"


def test_the_report_table_sums_clusters_past_the_first_ones_in_one_row():
    rows = [(0, "disk full", "disk full")] * 3 + [(1, "push denied", "push denied")] * 2
    rows += [(2, "probe failed", "probe failed")] + [(NOISE, "odd", "odd")]
    table = report_table(build_cluster_report(clustered(rows)), max_groups=1)
    assert table["group"].tolist() == ["cluster 0", "2 smaller clusters", "noise"]
    assert table["events"].tolist() == [3, 3, 1]
    assert table["share_pct"].tolist() == [42.86, 42.86, 14.29]


def test_table_records_round_floats_and_keep_each_value_plain():
    frame = pd.DataFrame(
        {"name": ["a\nb", "c"], "share": [1 / 3, float("nan")], "count": [1, 2], "ok": [True, False]}
    )
    assert table_columns(frame) == [("name", "string"), ("share", "float"), ("count", "int"), ("ok", "bool")]
    assert table_records(frame, digits=2) == [
        {"name": "a b", "share": 0.33, "count": 1, "ok": True},
        {"name": "c", "share": None, "count": 2, "ok": False},
    ]


# Another platform's message whose own words look like Qovery's framing: a section that says "message
# for the user" and a "Hint:" line.
FRAMED_ELSEWHERE = [
    f"Deploy of checkout-{n} failed: OOMKilled\n---- message for the user ----\n"
    f"The release was rolled back.\nHint: raise the memory limit of checkout-{n}"
    for n in range(3)
]


def report_of_day(messages: list[str], profile: str) -> ClusterReport:
    """The messages through the chain's steps after flatten, cleaned by `profile`."""
    events = pd.DataFrame({"row_id": range(len(messages)), "event_index": 0, "message": messages})
    corpus = build_corpus(events, profile=profile)
    clustered = cluster_corpus(corpus, vectorize_corpus(corpus, epochs=20))
    assert corpus.profile == clustered.profile == profile
    return report_clusters(clustered)


def test_a_generic_days_report_shows_its_examples_as_written_framing_words_and_all():
    report = report_of_day(FRAMED_ELSEWHERE, "generic")
    assert report.profile == "generic" and report.groups["n_events"].tolist() == [3]
    written = " ".join(FRAMED_ELSEWHERE[0].split())  # on one line, as a table cell shows it
    assert report_table(report)["examples"].tolist() == [f"1. {written}"]
    assert f"| 1. {written} |" in report_markdown(report, "day")
    assert report.groups.loc[0, "label"] == "Deploy of <*> failed: OOMKilled"
    assert report.groups.loc[0, "hint"] == ""


def test_a_qovery_days_report_shows_the_user_part_of_its_examples_and_the_hint():
    report = report_of_day(FRAMED_ELSEWHERE, "qovery")
    assert report.profile == "qovery"
    # Qovery's rules take everything up to "message for the user" for the team's section.
    assert report_table(report)["examples"].tolist() == [
        "1. The release was rolled back. raise the memory limit of checkout-0"
    ]
    assert report.groups.loc[0, "label"] == "The release was rolled back."
    assert report.groups.loc[0, "hint"] == "raise the memory limit of <*>"
    # Both reports keep the raw example whole for the JSON file.
    assert report.groups.loc[0, "examples"] == [FRAMED_ELSEWHERE[0]]
