"""End-to-end in Debian's Chromium: `streamlit run app.py`, load the home page, upload through the real
widget, and save screenshots to test-artifacts/ for a person to look at."""
import os
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
from bench.browser_pages import CHROMIUM_ARGS, streamlit_server  # noqa: E402 - one server start-up for tests and bench

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="run `make test`, which installs chromium")]


@pytest.fixture(scope="module")
def server():
    try:
        with streamlit_server() as (url, _):
            yield url
    except RuntimeError as e:   # the server's own output, not a bare timeout
        pytest.fail(str(e))


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


PAGES = [  # url path, agent, dataset, a text the page shows once its analysis is drawn
    ("Attention", "cartpole-dt", "cartpole", "Where the action token looks"),
    ("Return_conditioning", "cartpole-dt", "cartpole", "Return conditioning: achieved vs target return"),
    ("Credit_assignment", "keydoor-dt", "keydoor", "randomized"),
    ("Predicted_vs_real", "masked-pendulum-tt", "masked-pendulum", "Open-loop prediction error"),
    ("Embeddings", "cartpole-dt", "cartpole", "hidden states (PCA)"),
    ("Context_and_memory", "masked-cartpole-dt-k20", "masked-cartpole", "Action prediction vs context"),
    ("Circuits", "keydoor-dt", "keydoor", "Activation patching: the residual stream"),
]


@pytest.mark.parametrize("path, agent, dataset, text", PAGES, ids=[p[0] for p in PAGES])
def test_every_analysis_page_draws_its_figures(server, browser, path, agent, dataset, text):
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    page.goto(f"{server}/{path}?agent={agent}&dataset={dataset}")
    page.locator(".js-plotly-plot").first.wait_for(timeout=180_000)
    page.get_by_text(text).first.wait_for(timeout=180_000)
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 1", timeout=60_000)
    assert page.locator("[data-testid='stException']").count() == 0
    assert page.get_by_text(agent, exact=False).count() >= 1                 # the URL chose the agent
    page.wait_for_timeout(500)                                               # let plotly finish its transitions
    page.screenshot(path=str(ARTIFACTS / f"page_{path.lower()}.png"), full_page=True)
    page.close()


def test_download_an_exported_png(server, browser, tmp_path):
    import io

    from PIL import Image

    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    page.goto(f"{server}/Attention?agent=cartpole-dt&dataset=cartpole")
    page.locator(".js-plotly-plot").first.wait_for(timeout=120_000)
    with page.expect_download(timeout=120_000) as info:
        page.get_by_role("button", name="PNG", exact=True).first.click()
    path = tmp_path / "figure.png"
    info.value.save_as(path)
    assert info.value.suggested_filename == "attention_episode.png"
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(io.BytesIO(data))
    assert img.width >= 1800 and img.height >= 800                          # 900 px wide at scale 2
    assert page.locator("[data-testid='stException']").count() == 0
    page.close()


def test_two_sessions_do_not_see_each_others_uploads(server, browser, tmp_path):
    rows = [{"episode": e, "step": t, "obs_0": float(t), "action": 0, "reward": 1.0, "done": t == 2}
            for e in range(2) for t in range(3)]
    path = tmp_path / "private_upload.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    first, second = browser.new_context(), browser.new_context()
    a, b = first.new_page(), second.new_page()
    for p in (a, b):
        p.goto(server)
        p.get_by_role("heading", name="seqlens").wait_for(timeout=30_000)
    a.locator("input[type=file]").first.set_input_files(str(path))
    a.get_by_text("Loaded private_upload.csv").wait_for(timeout=30_000)
    b.reload()
    b.get_by_role("heading", name="seqlens").wait_for(timeout=30_000)

    def dataset_options(p) -> list[str]:
        p.locator("[data-testid='stSelectbox']").filter(has_text="Dataset").first.click()
        p.get_by_role("option").first.wait_for(timeout=30_000)
        opts = p.get_by_role("option").all_inner_texts()
        p.keyboard.press("Escape")
        return opts

    assert "upload: private_upload.csv" in dataset_options(a)
    others = dataset_options(b)
    assert "masked-pendulum" in others and not any("private_upload" in o for o in others)
    first.close()
    second.close()
