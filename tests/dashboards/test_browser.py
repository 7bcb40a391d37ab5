"""End to end in a real browser: ``handoffs dashboard`` as a subprocess, headless Chromium.

The dashboard reads a seeded store either through its own embedded directory (seeded by a
helper process first: chDB admits one process per directory) or through this test process's
ClickHouse HTTP endpoint. Screenshots go to ``test-artifacts/dashboard/``.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from dashboard_seed import BAD, CASCADE_EVIDENCE, OVERWRITE_EVIDENCE, RUNS, seed

from handoffs.store import Store
from handoffs.store.sharing import owned_endpoint

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
SEED_DIR = Path(__file__).resolve().parent
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
WAIT_MS = 60_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed_directory(path: Path) -> str:
    """Seed an embedded store in a helper process, which then lets the directory go."""
    url = f"chdb://{path}"
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(SEED_DIR)!r})
        from dashboard_seed import seed
        from handoffs.store import open_store
        seed(open_store(sys.argv[1]))
    """)
    done = subprocess.run([sys.executable, "-c", code, url], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return url


def serve(url: str, log: Path) -> tuple[subprocess.Popen, str]:
    """Start ``handoffs dashboard`` on a free loopback port; return it once it answers."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from handoffs.cli import main; main()", "dashboard",
         "--store", url, "--port", str(port)],
        stdout=log.open("w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(base + "/_stcore/health", timeout=2) as r:
                if r.read() == b"ok":
                    return proc, base
        except OSError:
            time.sleep(0.3)
    proc.terminate()
    raise AssertionError(f"dashboard did not come up: {log.read_text()}")


@pytest.fixture(params=["chdb", "http"])
def dashboard(request: pytest.FixtureRequest, tmp_path: Path, store: Store) -> Iterator[str]:
    if request.param == "chdb":
        url = seed_directory(tmp_path / "store")
    else:
        seed(store)
        ep = owned_endpoint(store.url.path)
        assert ep is not None
        url = f"clickhouse://default:{ep.password}@{ep.host}:{ep.port}/{store.url.database}"
    proc, base = serve(url, tmp_path / "dashboard.log")
    try:
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_runs_page_lists_runs_and_run_detail_shows_a_flagged_finding(
        dashboard: str, request: pytest.FixtureRequest) -> None:
    from playwright.sync_api import expect, sync_playwright

    engine = request.node.callspec.params["dashboard"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for scheme in ("light", "dark"):
                page = browser.new_page(viewport={"width": 1400, "height": 1000},
                                        color_scheme=scheme)
                # Runs page: every seeded run is a row of the runs table (glide grid cells).
                page.goto(dashboard + "/")
                grid = page.locator("[data-testid=stDataFrame]").first
                for run in RUNS:
                    expect(grid.get_by_text(run.run_id, exact=True)).to_have_count(1, timeout=WAIT_MS)
                expect(page.get_by_text("failed").first).to_be_visible()
                page.wait_for_timeout(1000)  # let the chart finish drawing for the screenshot
                page.screenshot(path=ARTIFACTS / f"runs-{engine}-{scheme}.png", full_page=True)

                # Run detail: the failing finding first, expanded, with its evidence.
                page.goto(f"{dashboard}/run?run={BAD.run_id}")
                cascade = page.get_by_text("error-cascade Error cascade · coder · step 3")
                expect(cascade).to_be_visible(timeout=WAIT_MS)
                expect(page.get_by_text(CASCADE_EVIDENCE)).to_be_visible()
                # A click on another finding opens its evidence and context.
                page.get_by_text("overwrite Supervisor overwrote sub-agent output").click()
                expect(page.get_by_text(OVERWRITE_EVIDENCE)).to_be_visible(timeout=WAIT_MS)
                page.wait_for_timeout(1000)
                page.screenshot(path=ARTIFACTS / f"run-{engine}-{scheme}.png", full_page=True)

                # The trace waterfall and the hand-off graph, drawn.
                page.get_by_role("tab", name="Trace").click()
                expect(page.locator("[data-testid=stVegaLiteChart]").first).to_be_visible()
                page.get_by_role("tab", name="Hand-off graph").click()
                graph = page.locator("[data-testid=stGraphVizChart] svg")
                expect(graph).to_contain_text("coder", timeout=WAIT_MS)
                expect(graph).to_contain_text("overwrite 100%")
                page.wait_for_timeout(500)
                page.screenshot(path=ARTIFACTS / f"graph-{engine}-{scheme}.png", full_page=True)

                # The analysis pages draw their charts (Vega renders an SVG or canvas per chart).
                # Each page's last element, so the screenshot shows the finished page.
                for path, heading in (("agents", "Metrics over time"), ("modes", "Trend per mode"),
                                      ("compare", "Per-run figures")):
                    page.goto(f"{dashboard}/{path}")
                    expect(page.get_by_text(heading)).to_be_visible(timeout=WAIT_MS)
                    expect(page.locator("[data-testid=stVegaLiteChart]").first).to_be_visible()
                    page.wait_for_timeout(1000)
                    page.screenshot(path=ARTIFACTS / f"{path}-{engine}-{scheme}.png", full_page=True)
                page.close()
        finally:
            browser.close()
