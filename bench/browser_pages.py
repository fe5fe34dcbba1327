"""Dashboard responsiveness in a real browser: `python -m bench.browser_pages [--json] [--only PAGE]`.

Starts `streamlit run app.py`, visits every page once to warm the caches (agents loaded, results cached),
then measures with Debian's Chromium: each page's render (navigation until every figure is drawn and
Streamlit is idle), one interaction per page (a widget moved until the redraw is done), and the server
process's peak resident memory (/proc, VmHWM). Issue targets: render < 3 s, interaction < 1 s, < 1.5 GB.
The episode player (issue 16: first render < 3 s warm, a step < 50 ms) has no figure to wait for: its render runs
until the player in its iframe has drawn step 0 and Streamlit is idle; its first visit (server warm, the episode not
cached) is timed too; its interaction is 20 presses of → on the page, and per step inside the iframe (a keydown
until the next animation frame: the step is painted). `--only PAGE`: the pages whose path contains PAGE.
Not a test: a timing on a shared machine is a measurement, not a pass/fail.
"""
from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]

# page, query, how many figures it draws first, the widget moved (playwright locator, key to press)
PAGES = [
    ("", "agent=cartpole-dt&dataset=cartpole", 1, None),
    ("Dataset", "dataset=cartpole", 3, ("[data-testid='stSlider'] input[type=range]", "ArrowRight")),
    ("Attention", "agent=cartpole-dt&dataset=cartpole", 5, ("[data-testid='stSlider'] input[type=range]", "ArrowRight")),
    ("Return_conditioning", "agent=cartpole-dt&dataset=cartpole", 4, ("[data-testid='stNumberInput'] input >> nth=-1", "ArrowUp")),
    ("Credit_assignment", "agent=keydoor-dt&dataset=keydoor", 2, ("[data-testid='stSlider'] input[type=range]", "ArrowLeft")),
    ("Predicted_vs_real", "agent=masked-pendulum-tt&dataset=masked-pendulum", 2, ("[data-testid='stSlider'] input[type=range]", "ArrowRight")),
    ("Embeddings", "agent=cartpole-dt&dataset=cartpole", 1, None),
    ("Context_and_memory", "agent=masked-cartpole-dt-k20&dataset=masked-cartpole", 1, None),
    ("Episode_player", "agent=cartpole-dt&dataset=cartpole&episode=0", 0, "player"),
    ("Live_play", "agent=cartpole-dt&dataset=cartpole", 3, ("body", "ArrowRight")),   # → pushes right: one step
]
PLAYER_STEPS = 20     # → presses timed on the player


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(start_timeout: float = 60):
    """The server `make app` starts (ui/serve.py: imports warmed, then `streamlit run app.py`) on a free local
    port until the block ends: yields (url, process). The browser tests share it."""
    port = _port()
    log = tempfile.TemporaryFile()   # a file, not a pipe: an unread pipe would stall the server once full
    proc = subprocess.Popen([sys.executable, "-m", "ui.serve", "app.py", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true"],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + start_timeout
    try:
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                    break
            except OSError:
                if time.time() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"streamlit did not start: {log.read().decode()[-2000:]}") from None
                time.sleep(0.5)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:   # kaleido's Chromium can outlive a polite stop
            proc.kill()
            proc.wait(timeout=20)
        log.close()


def _rss_mb(pid: int, field: str = "VmHWM") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return float("nan")


# what the figures show: a redraw with new data changes it
_SIGNATURE = ("() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(e => "
              "(e.layout && e.layout.title ? e.layout.title.text : '') + JSON.stringify(e.data).length).join('|')")


def _idle(page, n_figures: int, timeout: float = 180_000) -> None:
    page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {n_figures}", timeout=timeout)
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout)
    page.wait_for_timeout(50)
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout)


def _player_ready(page, timeout: float = 180_000):
    """The player's iframe once it has drawn step 0 and Streamlit is idle (the browser test reaches it the same way)."""
    page.locator("iframe").first.wait_for(timeout=timeout)
    frame = page.locator("iframe").first.element_handle().content_frame()
    frame.wait_for_function("window.seqlensPlayer && document.body.dataset.index === '0'", timeout=timeout)
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout)
    return frame


# inside the player: a → keydown, then the next animation frame (the step is painted by then), n times
_STEP_TIMES = """async n => {
    const p = window.seqlensPlayer, frame = () => new Promise(r => requestAnimationFrame(r)), times = [];
    await frame();
    for (let k = 0; k < n; k++) {
        const t0 = performance.now();
        document.body.dispatchEvent(new KeyboardEvent("keydown", {key: "ArrowRight", bubbles: true, cancelable: true}));
        await frame();
        times.push(performance.now() - t0);
    }
    const redraw = p.renderMs.slice(-n);
    return {index: p.index, mean_ms: times.reduce((a, b) => a + b) / n, max_ms: Math.max(...times),
            redraw_ms: redraw.reduce((a, b) => a + b) / redraw.length};
}"""


def _player_steps(page, frame, n: int = PLAYER_STEPS) -> dict:
    """ms per step: n presses of → on the page around the player (playwright's round trip per key included), then
    n keydowns inside the iframe, each until the next animation frame."""
    start = frame.evaluate("window.seqlensPlayer.index")
    t0 = time.perf_counter()
    for _ in range(n):
        page.keyboard.press("ArrowRight")
    frame.wait_for_function(f"window.seqlensPlayer.index === {start + n}", timeout=30_000)
    frame.evaluate("() => new Promise(r => requestAnimationFrame(() => r()))")
    keys_ms = (time.perf_counter() - t0) * 1000 / n
    inside = frame.evaluate(_STEP_TIMES, n)
    if inside["index"] != start + 2 * n:
        raise RuntimeError(f"the player is at step {inside['index']}, not {start + 2 * n}")
    return {"step_ms_keys": round(keys_ms, 1), "step_ms": round(inside["mean_ms"], 1),
            "step_ms_max": round(inside["max_ms"], 1), "redraw_ms": round(inside["redraw_ms"], 2)}


def run(only: str | None = None) -> dict:
    from playwright.sync_api import sync_playwright

    pages = [p for p in PAGES if only is None or only in (p[0] or "Home")]
    rows = []
    with streamlit_server(start_timeout=120) as (url, proc):
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            peaks, first = {}, {}
            for path, query, n, widget in pages:   # warm: agents loaded, results cached
                if widget == "player":              # another episode first: agent, torch and renderer loaded
                    page.goto(f"{url}/{path}?{query.replace('episode=0', 'episode=1')}")
                    _player_ready(page)
                t0 = time.perf_counter()
                page.goto(f"{url}/{path}?{query}")
                _player_ready(page) if widget == "player" else _idle(page, n)
                first[path or "Home"] = round(time.perf_counter() - t0, 2)
                peaks[path or "Home"] = round(_rss_mb(proc.pid), 1)   # peak so far: which page grows it
            for path, query, n, widget in pages:
                t0 = time.perf_counter()
                page.goto(f"{url}/{path}?{query}")
                frame = _player_ready(page) if widget == "player" else _idle(page, n)
                render = time.perf_counter() - t0
                interaction = None
                if widget == "player":
                    steps = _player_steps(page, frame)
                    rows.append({"page": path, "render_s": round(render, 2), "interaction_s": None,
                                 "peak_rss_after_first_visit_mb": peaks[path], "first_visit_s": first[path], **steps})
                    continue
                if widget is not None:
                    try:
                        page.locator(widget[0]).first.evaluate("e => e.focus()", timeout=10_000)
                    except Exception as e:  # noqa: BLE001 - report the page, measure the rest
                        print(f"{path}: could not focus {widget[0]}: {type(e).__name__}", file=sys.stderr)
                    else:
                        before = page.evaluate(_SIGNATURE)
                        t0 = time.perf_counter()
                        page.keyboard.press(widget[1])
                        page.wait_for_function(f"({_SIGNATURE})() !== {json.dumps(before)}", timeout=180_000)
                        _idle(page, n)
                        interaction = time.perf_counter() - t0
                rows.append({"page": path or "Home", "render_s": round(render, 2),
                             "interaction_s": None if interaction is None else round(interaction, 2),
                             "peak_rss_after_first_visit_mb": peaks[path or "Home"]})
            browser.close()
        memory, now = _rss_mb(proc.pid), _rss_mb(proc.pid, "VmRSS")
    return {"pages": rows, "server_peak_rss_mb": round(memory, 1), "server_rss_after_mb": round(now, 1)}


def main() -> None:
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
    res = run(only)
    if "--json" in sys.argv:
        print(json.dumps(res))
        return
    print("| page | render (warm) s | interaction s | server peak RSS after first visit, MB |\n|---|---|---|---|")
    for r in res["pages"]:
        inter = r["interaction_s"] if r["interaction_s"] is not None else "—"
        if "step_ms" in r:
            inter = (f"{r['step_ms']} ms per step (→ ×{PLAYER_STEPS} inside the player, max {r['step_ms_max']}; "
                     f"{r['step_ms_keys']} ms per key pressed from playwright)")
        print(f"| {r['page']} | {r['render_s']} | {inter} | {r['peak_rss_after_first_visit_mb']} |")
    for r in res["pages"]:
        if "step_ms" in r:
            print(f"\n{r['page']}: first visit (not cached) {r['first_visit_s']} s (target < 3 s: "
                  f"{'met' if r['first_visit_s'] < 3 else 'not met'}), cached {r['render_s']} s; a step "
                  f"{r['step_ms']} ms (target < 50 ms: {'met' if r['step_ms'] < 50 else 'not met'}), redraw "
                  f"{r['redraw_ms']} ms")
    print(f"\nserver peak RSS: {res['server_peak_rss_mb']} MB, after the run: {res['server_rss_after_mb']} MB")


if __name__ == "__main__":
    main()
