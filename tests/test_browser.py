"""The page in a real browser: Debian's Chromium driven by Playwright against `streamlit run`.

Skips when Chromium or Playwright is missing (CI installs both; see .ci/run). Tiny random
checkpoints keep it fast; it checks behaviour, never drawing quality.
"""

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from draw import checkpoint
from draw.config import DrawConfig
from draw.model import DRAW

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app" / "streamlit_app.py"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-gpu",
]

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements-dev.txt)")
pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK), reason=f"no Chromium at {CHROMIUM}: apt-get install -y chromium"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_server(checkpoints: Path, data_dir: Path | None = None, timeout: float = 90.0):
    """`streamlit run` the app on a free localhost port; yields its URL once /_stcore/health is ok."""
    port = free_port()
    env = {**os.environ, "DRAW_CHECKPOINTS": str(checkpoints), "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    env.pop("DRAW_DATA_DIR", None)  # the page must work with no data directory
    if data_dir is not None:
        env["DRAW_DATA_DIR"] = str(data_dir)
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true"]
    cmd += ["--server.port", str(port), "--server.address", "127.0.0.1", "--server.fileWatcherType", "none"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start: {proc.stdout.read().decode(errors='replace')[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def chromium_page(width: int = 1400, height: int = 2400):
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


def wait_idle(page) -> None:
    """Wait until Streamlit has finished the current rerun (and any rerun it asked for)."""
    page.wait_for_timeout(400)
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=90_000)
    page.wait_for_timeout(400)


def scrubber_step(page) -> str:
    return page.locator(".js-plotly-plot .slider-container .slider-group > text.slider-label").first.text_content()


def move_scrubber(page, fraction: float) -> None:
    """Click the scrubber's rail at `fraction` of its length, as a person would."""
    rail = page.locator(".js-plotly-plot .slider-container .slider-rail-rect").first
    box = rail.bounding_box()
    page.mouse.click(box["x"] + fraction * box["width"], box["y"] + box["height"] / 2)
    page.wait_for_timeout(300)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    checkpoint.save(DRAW(DrawConfig(T=8, enc_size=32, dec_size=32, z_size=8)), root / "tiny_attention", {})
    with streamlit_server(root) as url:
        yield url


def test_scrub_edit_and_screenshot(server, tmp_path):
    with chromium_page() as page:
        page.goto(server)
        page.get_by_text("DRAW Explorer").first.wait_for()
        page.locator(".js-plotly-plot .slider-container").first.wait_for()
        wait_idle(page)
        assert scrubber_step(page).strip().endswith("8")  # opens at the last step, T = 8

        move_scrubber(page, 0.3)
        moved = scrubber_step(page)
        assert not moved.strip().endswith("8"), moved
        page.locator(".js-plotly-plot .updatemenu-button").first.click()  # ▶ play runs on to T
        # (the page's 60 s default wait: on a busy machine the browser's animation took over 10 s)
        page.wait_for_function(
            "() => document.querySelector('.js-plotly-plot .slider-group > text.slider-label')"
            ".textContent.trim().endsWith('= 8')"
        )
        move_scrubber(page, 0.3)

        # Edit a latent: focus the first z_t slider and nudge it with the keyboard.
        slider = page.locator('[data-testid="stSlider"]').filter(has_text="z_t[").first.get_by_role("slider")
        slider.focus()
        for _ in range(5):
            page.keyboard.press("ArrowRight")
        wait_idle(page)
        page.get_by_text("1 dimension(s) moved").first.wait_for()
        page.wait_for_url(re.compile(r"[?&]edits="))  # the edit is in the shareable URL

        page.get_by_role("tab", name="Export").click()
        page.get_by_role("button", name="Make animated GIF").click()
        wait_idle(page)
        with page.expect_download() as download:
            page.get_by_role("button", name="Download GIF").click()
        assert Path(download.value.path()).read_bytes()[:6] == b"GIF89a"
        with page.expect_download() as download:
            page.get_by_role("button", name="Download trace JSON").click()
        assert json.loads(Path(download.value.path()).read_text())["steps"] == 8

        shot = tmp_path / "explorer.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        assert page.locator('[data-testid="stException"]').count() == 0


def test_draw_a_digit_and_click_a_kl_bar(server):
    with chromium_page() as page:
        page.goto(server + "/?mode=reconstruct")  # no data directory: the mouse pad is offered
        pad = page.locator("canvas[aria-label^='drawing pad']")
        pad.wait_for()
        wait_idle(page)
        b = pad.bounding_box()
        page.mouse.move(b["x"] + 0.5 * b["width"], b["y"] + 0.15 * b["height"])
        page.mouse.down()
        for i in range(20):  # a vertical stroke: a "1"
            page.mouse.move(b["x"] + 0.5 * b["width"], b["y"] + (0.15 + 0.035 * i) * b["height"])
        page.mouse.up()
        page.get_by_text("Reconstructing your drawing").first.wait_for()
        page.locator(".js-plotly-plot .slider-container").first.wait_for()
        wait_idle(page)

        bars = page.locator(".js-plotly-plot").first.locator(".barlayer .point path")
        boxes = [bars.nth(i).bounding_box() for i in range(bars.count())]
        assert len(boxes) == 8
        t = max(range(8), key=lambda i: boxes[i]["height"]) + 1  # the tallest bar is the easiest target
        box = boxes[t - 1]
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] - 2)
        page.wait_for_url(re.compile(rf"[?&]t={t}(&|$)"))
        wait_idle(page)
        assert scrubber_step(page).strip().endswith(f"= {t}")
        assert page.locator('[data-testid="stException"]').count() == 0
