"""Dashboard responsiveness in a real browser: `python -m bench.browser_pages [--json]`.

Starts `streamlit run app.py`, visits every page once to warm the caches (agents loaded, results cached),
then measures with Debian's Chromium: each page's render (navigation until every figure is drawn and
Streamlit is idle), one interaction per page (a widget moved until the redraw is done), and the server
process's peak resident memory (/proc, VmHWM). Issue targets: render < 3 s, interaction < 1 s, < 1.5 GB.
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
]


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


def run() -> dict:
    from playwright.sync_api import sync_playwright

    rows = []
    with streamlit_server(start_timeout=120) as (url, proc):
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            peaks = {}
            for path, query, n, _ in PAGES:   # warm: agents loaded, results cached
                page.goto(f"{url}/{path}?{query}")
                _idle(page, n)
                peaks[path or "Home"] = round(_rss_mb(proc.pid), 1)   # peak so far: which page grows it
            for path, query, n, widget in PAGES:
                t0 = time.perf_counter()
                page.goto(f"{url}/{path}?{query}")
                _idle(page, n)
                render = time.perf_counter() - t0
                interaction = None
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
    res = run()
    if "--json" in sys.argv:
        print(json.dumps(res))
        return
    print("| page | render (warm) s | interaction s | server peak RSS after first visit, MB |\n|---|---|---|---|")
    for r in res["pages"]:
        inter = r["interaction_s"] if r["interaction_s"] is not None else "—"
        print(f"| {r['page']} | {r['render_s']} | {inter} | {r['peak_rss_after_first_visit_mb']} |")
    print(f"\nserver peak RSS: {res['server_peak_rss_mb']} MB, after the run: {res['server_rss_after_mb']} MB")


if __name__ == "__main__":
    main()
