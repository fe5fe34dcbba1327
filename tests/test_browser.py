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
def server(streamlit_url):   # the browser modules' one server (tests/conftest.py)
    return streamlit_url


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


def test_direct_link_to_a_fresh_server_lists_only_the_navigation_pages(browser):
    """The first request a just-started server (ui/serve.py, as `make app`) gets is a direct link to a page: its sidebar
    lists exactly st.navigation's pages (ui/nav.py), in order, and nothing else (no page of Streamlit's own pages/
    discovery), and the page shown is the one linked."""
    from ui.nav import PAGES as NAV

    expected = [(title, path or "") for _, title, _, path in NAV]
    with streamlit_server() as (url, _):   # its own server: the module's has had requests already
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        page.goto(f"{url}/Dataset?dataset=keydoor")
        page.get_by_role("heading", name="Dataset").first.wait_for(timeout=60_000)
        page.get_by_text("seqlens/KeyToDoor-v0").first.wait_for(timeout=60_000)
        page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000)
        # the links are drawn by the script (ui/nav.links), after the heading may already show: wait for the last one
        page.locator("[data-testid='stSidebar'] [data-testid='stPageLink-NavLink']").nth(len(expected) - 1).wait_for(
            timeout=60_000)
        links = page.locator("[data-testid='stSidebar'] [data-testid='stPageLink-NavLink']").evaluate_all(
            "as => as.map(a => [a.querySelector('[data-testid=stMarkdownContainer]').innerText.trim(),"
            " new URL(a.href).pathname.replace(/^\\//, ''), getComputedStyle(a).backgroundColor])")   # the page each opens
        assert [(title, path) for title, path, _ in links] == expected
        # st.page_link marks the page shown by its background (no aria-current)
        assert [title for title, _, background in links if background != "rgba(0, 0, 0, 0)"] == ["Dataset"], links
        assert page.locator("[data-testid='stSidebar'] a").count() == len(expected)   # no other link in the sidebar
        assert page.locator("[data-testid='stException']").count() == 0
        page.close()


# url path, agent, dataset, a text the page shows once its analysis is drawn: the pages for agents the page gallery
# (tests/test_browser_gallery.py, which checks the same for its agents: DRAWN) does not walk
PAGES = [
    ("Predicted_vs_real", "masked-pendulum-tt", "masked-pendulum", "Open-loop prediction error"),
    ("Context_and_memory", "masked-cartpole-dt-k20", "masked-cartpole", "Action prediction vs context"),
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


def test_episode_player_steps_in_the_browser_without_rerunning_the_script(server, browser):
    """Play, → and the scrubber run in the component's JavaScript: no script run may start while it plays. Checked on
    the websocket itself: a rerun needs a `rerun_script` message from the browser, and every script run starts with a
    `new_session` message from the server; neither may pass while the player steps 20 times and plays. The per-step
    time (performance.now from a step until the next animation frame) is written to test-artifacts/."""
    import json

    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    sent, received = [], []

    def watch(ws):
        ws.on("framesent", lambda payload: sent.append(payload))
        ws.on("framereceived", lambda payload: received.append(payload))

    def kinds(frames, message) -> list[str]:
        out = []
        for payload in frames:
            if isinstance(payload, bytes):
                m = message()
                m.ParseFromString(payload)
                out.append(m.WhichOneof("type"))
        return out

    page.on("websocket", watch)
    page.goto(f"{server}/Episode_player?agent=cartpole-dt&dataset=cartpole&episode=0")
    page.locator("iframe").first.wait_for(timeout=180_000)
    player = page.locator("iframe").first.element_handle().content_frame()
    player.wait_for_function("window.seqlensPlayer && document.body.dataset.index === '0'", timeout=60_000)
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000)
    page.wait_for_timeout(500)
    assert "script_finished" in kinds(received, ForwardMsg)
    assert page.locator("[data-testid='stException']").count() == 0
    n_sent, n_received = len(sent), len(received)

    for _ in range(20):                                  # the keys on the page around the player
        page.keyboard.press("ArrowRight")
    player.wait_for_function("window.seqlensPlayer.index === 20", timeout=10_000)
    assert player.locator("#status").inner_text().startswith("step 20 / 500")
    assert player.locator("#scrub").input_value() == "20"
    page.screenshot(path=str(ARTIFACTS / "page_episode_player.png"), full_page=True)

    timing = player.evaluate("""async () => {
        const p = window.seqlensPlayer, times = [], frame = () => new Promise(r => requestAnimationFrame(r));
        await frame();
        for (let k = 0; k < 20; k++) {
            const t0 = performance.now();
            p.step(1);
            await frame();                               // the step is drawn by the next animation frame
            times.push(performance.now() - t0);
        }
        const sync = p.renderMs.slice(-20);
        return {index: p.index, per_step_ms: times, mean_ms: times.reduce((a, b) => a + b) / 20,
                max_ms: Math.max(...times), redraw_mean_ms: sync.reduce((a, b) => a + b) / sync.length};
    }""")
    assert timing["index"] == 40
    player.locator("#play").click()
    player.wait_for_function("window.seqlensPlayer.index >= 60", timeout=10_000)   # 50 steps per second at 1x
    player.locator("#play").click()
    page.wait_for_timeout(300)
    (ARTIFACTS / "episode_player_timing.json").write_text(json.dumps(timing, indent=1))
    print(f"episode player: {timing['mean_ms']:.1f} ms per step (max {timing['max_ms']:.1f}), redraw "
          f"{timing['redraw_mean_ms']:.2f} ms")

    reruns = [k for k in kinds(sent[n_sent:], BackMsg) if k in ("rerun_script", "stop_script")]
    runs = [k for k in kinds(received[n_received:], ForwardMsg) if k in ("new_session", "script_finished")]
    assert reruns == [] and runs == [], (reruns, runs)
    # the check can fail: choosing another episode (a widget) does send a rerun, and the new episode's player comes
    n_sent = len(sent)
    box = page.locator("[data-testid='stNumberInput'] input").first
    box.fill("3")
    box.press("Enter")
    page.wait_for_function("!!document.querySelector('iframe') && document.querySelector('iframe').contentDocument"
                           ".querySelector('#status')?.textContent.startsWith('step 0 / 65')", timeout=120_000)
    assert "rerun_script" in kinds(sent[n_sent:], BackMsg)
    assert page.locator("[data-testid='stException']").count() == 0
    page.close()


def test_live_play_arrow_keys_act_and_the_agent_takes_over(server, browser):
    """Live play in Chromium: ← and → press the action buttons (st.button shortcuts), each a step of the game; "Let
    the agent act" plays 10 steps with the agent's own actions, and the page says who took the last step."""
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1300})
    page.goto(f"{server}/Live_play?agent=cartpole-dt&dataset=cartpole")
    page.get_by_role("button", name="Let the agent act").wait_for(timeout=120_000)
    page.locator(".js-plotly-plot").nth(1).wait_for(timeout=60_000)   # the policy and attention charts

    def step_shown(n: int):
        page.wait_for_function("n => [...document.querySelectorAll('[data-testid=stMetricValue]')]"
                               ".some(e => e.innerText.trim() === String(n))", arg=n, timeout=60_000)

    for n, key in enumerate(["ArrowRight", "ArrowLeft", "ArrowRight"], 1):
        page.locator("body").press(key)
        step_shown(n)
    page.get_by_text("Last step by you: push right, reward 1.").wait_for(timeout=30_000)
    page.get_by_role("button", name="Let the agent act").click()
    step_shown(13)
    page.get_by_text("Last step by the agent").wait_for(timeout=30_000)
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 3", timeout=60_000)  # value track
    assert page.locator("[data-testid='stException']").count() == 0
    page.mouse.move(5, 5)                                # no tooltip over the buttons in the screenshot
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000)
    page.wait_for_timeout(800)
    page.screenshot(path=str(ARTIFACTS / "page_live_play.png"), full_page=True)
    page.close()
