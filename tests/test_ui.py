"""The Dagster UI on a small demo instance, in a real browser: what a user sees where they look.

The demo (`run_demo`, two days of 1,000 error events) fills a Dagster instance in a temporary folder;
`dagster-webserver` serves it, as `make dev` does after `make demo`; Chromium, driven by Playwright,
opens the pages. Chromium is Debian's (`apt-get install chromium`; `.ci/run` installs it): Playwright
never downloads a browser here. Screenshots of every page checked go to ui_screenshots/ (not committed).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import FIXED_NOW, until

from assets.settings import Settings
from dagster_project.definitions import build_definitions
from resources.alert_store import AlertStore

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO / "ui_screenshots"
# The demo's two days, the two before the fixed clock's day.
DEMO_DAYS = ["2026-11-20", "2026-11-21"]
NEWEST_DAY = DEMO_DAYS[-1]
DEMO = (
    "from datetime import datetime\n"
    "from dagster_project.demo import run_demo\n"
    f"run_demo(datetime.fromisoformat({FIXED_NOW.isoformat()!r}), days=2, n_error_events=1000, workers=1)\n"
)
# Pages are slow to come on a loaded machine: a wait for something to show, not a measure of speed.
PATIENCE_MS = 120_000


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true, so this is a failure, not a skip)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's Chromium, driven by Playwright."""
    if not CHROMIUM.exists():
        _unavailable(f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("needs playwright (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield chromium
        chromium.close()


def _environment(**settings: str) -> dict[str, str]:
    """This process's environment without any FAULTLINE_* setting or Dagster home, plus `settings`."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith("FAULTLINE_") and k != "DAGSTER_HOME"}
    return {**kept, **settings}


@pytest.fixture(scope="module")
def demo_data(browser, tmp_path_factory) -> Path:
    """The demo's data folder: stores, reports and the Dagster instance (dagster_home)."""
    data = tmp_path_factory.mktemp("ui_demo")
    demo = subprocess.run(
        [sys.executable, "-c", DEMO],
        cwd=REPO,
        env=_environment(FAULTLINE_DATA_DIR=str(data)),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert demo.returncode == 0, f"the demo failed:\n{demo.stdout[-3000:]}\n{demo.stderr[-3000:]}"
    return data


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@dataclass(frozen=True)
class UI:
    url: str
    data: Path
    browser: object

    def open(self, path: str, shows: str, screenshot: str | None = None):
        """A new page at `path`, once `shows` is on it, with the community dialog already dismissed
        (as a user's Skip leaves it); its screenshot saved as `screenshot`.png after."""
        # Tall: the UI scrolls inside the page, so a screenshot shows what fits in the window.
        page = self.browser.new_page(viewport={"width": 1400, "height": 2000})
        page.add_init_script('window.localStorage.setItem("communityNux", JSON.stringify("1"))')
        page.goto(self.url + path)
        page.get_by_text(shows, exact=True).first.wait_for(timeout=PATIENCE_MS)
        page.wait_for_load_state("networkidle")
        if screenshot:
            self.screenshot(page, screenshot)
        return page

    def screenshot(self, page, name: str) -> None:
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def ui(browser, demo_data: Path) -> Iterator[UI]:
    """`dagster-webserver` on the demo's instance and code location, as `make dev` opens them."""
    port = _free_port()
    log = demo_data / "webserver.log"
    webserver = Path(sys.executable).with_name("dagster-webserver")
    start_date = (demo_data / "demo_start_date").read_text().strip()
    env = _environment(
        DAGSTER_HOME=str(demo_data / "dagster_home"),
        FAULTLINE_DATA_DIR=str(demo_data),
        FAULTLINE_START_DATE=start_date,
    )
    with open(log, "w") as output:
        server = subprocess.Popen(
            [str(webserver), "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
            cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        assert until(lambda: _answers(url + "/server_info") or server.poll() is not None, patience_s=180)
        assert server.poll() is None, f"dagster-webserver stopped:\n{log.read_text()[-3000:]}"
        yield UI(url, demo_data, browser)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _text(page) -> str:
    """The page's text as a reader sees it, runs of white space as one space."""
    return " ".join(page.inner_text("body").split())


def _one_line(text: str) -> str:
    return " ".join(text.split())


def test_the_report_shows_the_newest_days_groups_with_their_wildcards_intact(ui: UI):
    report = json.loads((ui.data / "reports" / f"error_clusters_{NEWEST_DAY}.json").read_text())
    labels = [group["label"] for group in report["groups"] if group["cluster_id"] >= 0]
    assert len(labels) >= 5 and sum("<*>" in label for label in labels) >= 3
    page = ui.open("/assets/error_cluster_report", "Latest materialization", "error_cluster_report")
    shown = _text(page)
    assert NEWEST_DAY in shown
    for label in labels:
        assert _one_line(label) in shown, f"the group {label!r} is not on the page as it is"


def test_the_stuck_tasks_are_named_on_the_check_and_in_the_ticks_log(ui: UI):
    alerts = AlertStore(url=f"sqlite:///{ui.data / 'faultline.db'}").alerts()
    assert len(alerts) == 6  # the demo's planted stuck runs
    page = ui.open(
        "/assets/task_duration_baselines?view=checks", "tasks_within_their_limit", "stuck_tasks_check"
    )
    shown = _text(page)
    for alert in alerts.itertuples():
        assert alert.task_type in shown and alert.run_id in shown, f"{alert.task_type} {alert.run_id}"

    page = ui.open("/locations/faultline/sensors/long_running_tasks", "View logs")
    page.get_by_text("View logs").first.click()
    page.get_by_text(f"Task '{alerts['task_type'].iloc[0]}'").first.wait_for(timeout=PATIENCE_MS)
    ui.screenshot(page, "sensor_tick_logs")
    shown = _text(page)
    for alert in alerts.itertuples():
        assert f"Task '{alert.task_type}' (run {alert.run_id}) has been running for" in shown


def _checks() -> list[tuple[str, str, str]]:
    """Every check of the code location: its asset, name and description."""
    graph = build_definitions(Settings(start_date=DEMO_DAYS[0])).resolve_asset_graph()
    specs = [graph.get_check_spec(key) for key in graph.asset_check_keys]
    return sorted((spec.asset_key.to_user_string(), spec.name, spec.description or "") for spec in specs)


def test_every_check_shows_its_description(ui: UI):
    checks = _checks()
    assert len(checks) >= 4
    for asset, name, description in checks:
        assert description, f"the check {name} has no description"
        page = ui.open(f"/assets/{asset}?view=checks", name)
        page.get_by_text(name, exact=True).first.click()
        page.wait_for_load_state("networkidle")
        ui.screenshot(page, f"check_{name}")
        # The UI renders a description as markdown: `code` shows without its backticks.
        expected = _one_line(description.replace("`", ""))
        assert expected in _text(page).replace("`", ""), f"{asset}: {name}'s description is not shown"


@pytest.mark.parametrize(
    "asset, chart_file",
    [
        ("error_share_chart", f"error_clusters_{NEWEST_DAY}-shares.png"),
        ("duration_limit_chart", "duration_limits.png"),
    ],
)
def test_each_chart_shows_as_an_image_on_its_asset_page(ui: UI, asset: str, chart_file: str):
    page = ui.open(f"/assets/{asset}", "Latest materialization")
    assert chart_file in _text(page)
    # Markdown metadata opens in a dialog, where the image is drawn from its data: URL.
    page.locator("tr", has=page.get_by_text("chart", exact=True)).first.get_by_text("Show Markdown").click()
    image = page.locator('img[src^="data:image/png;base64,"]').first
    image.wait_for(timeout=PATIENCE_MS)
    # The dialog fades in: the screenshot waits for its animations to end, or shows it half-drawn.
    page.wait_for_function(
        "() => document.getAnimations().every(animation => animation.playState !== 'running')",
        timeout=PATIENCE_MS,
    )
    ui.screenshot(page, asset)
    width, height = image.evaluate("image => [image.naturalWidth, image.naturalHeight]")
    assert width == 1000 and height > 300  # decoded: a broken image has no size
