"""End-to-end in Debian's Chromium: `streamlit run app.py`, load the home page, upload through the real
widget, and save screenshots to test-artifacts/ for a person to look at."""
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="run `make test`, which installs chromium")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail(f"streamlit did not start: {proc.stdout.read().decode()[-2000:]}")
    yield url
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_home_page_renders_table_and_histogram(server, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1750})
    page.goto(server)
    page.get_by_role("heading", name="seqlens").wait_for(timeout=30_000)
    page.locator(".js-plotly-plot .bars path").first.wait_for(timeout=30_000)
    assert page.locator(".js-plotly-plot .bars path").count() > 5  # the histogram really drew bars
    assert page.get_by_text("Episode returns").count() >= 1
    page.get_by_text("Shipped agents").wait_for(timeout=30_000)
    assert page.locator("[data-testid='stException']").count() == 0
    page.screenshot(path=str(ARTIFACTS / "home.png"), full_page=True)
    page.close()


def test_upload_csv_through_the_widget(server, browser, tmp_path):
    rows = [{"episode": e, "step": t, "obs_0": t * 0.5, "action": t % 2, "reward": float(e + 1), "done": t == 4}
            for e in range(3) for t in range(5)]
    path = tmp_path / "browser_upload.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(server)
    page.get_by_role("heading", name="seqlens").wait_for(timeout=30_000)
    page.locator("input[type=file]").first.set_input_files(str(path))   # the trajectories uploader
    page.get_by_text("Loaded browser_upload.csv: 3 episodes, 15 steps.").wait_for(timeout=30_000)
    page.locator("[data-testid='stMetricValue']").filter(has_text="10").first.wait_for(timeout=30_000)  # mean return
    assert page.locator("[data-testid='stException']").count() == 0
    page.screenshot(path=str(ARTIFACTS / "home_upload.png"), full_page=True)
    page.close()


def test_dataset_page_draws_episode_charts(server, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    page.goto(f"{server}/Dataset?dataset=keydoor")
    page.get_by_role("heading", name="Dataset").first.wait_for(timeout=30_000)
    page.locator(".js-plotly-plot .scatterlayer .trace").first.wait_for(timeout=30_000)
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 3", timeout=30_000)
    assert page.get_by_text("seqlens/KeyToDoor-v0").count() >= 1
    assert page.locator("[data-testid='stException']").count() == 0
    page.screenshot(path=str(ARTIFACTS / "dataset_page.png"), full_page=True)
    page.close()
