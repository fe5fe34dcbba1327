"""The page gallery (issue 27, items 3 and 8), in Debian's Chromium: every page of ui/nav.py for three agents (a
Decision Transformer on CartPole and on Key-to-Door, a Trajectory Transformer on Pendulum) at a viewport 1000 px wide,
and every page at 1600 px for one of them, the agents taking turns (`widths`). The browser modules' one server, one
browser, one tab (each page loaded once, then resized), walked once (the `walk` fixture); the tests read what it saw.

- test-artifacts/gallery/<agent>/<page>.png (1000 px) and <page>_1600.png: what a person looks at;
- the analysis pages whose agent the gallery has show their analysis (DRAWN: a text drawn with it) and the agent;
- no Streamlit exception and no error box (st.error draws `stAlertContentError`) on any of them;
- nothing clipped: on every `.js-plotly-plot`, the title, axis titles (x/y/x2/y2…, colour-bar titles), legend and
  annotations lie inside the plot's own SVG (its `.main-svg`), the legend does not overlap the title, the SVG is not
  wider than the chart's container, and the page's headings, button labels and metrics are not cut by their container (scrollWidth >
  clientWidth).
  Every box is written to test-artifacts/gallery/boxes.json.
"""
import json
import os
from pathlib import Path

import pytest

from bench.browser_pages import CHROMIUM_ARGS

ROOT = Path(__file__).resolve().parent.parent
GALLERY = ROOT / "test-artifacts" / "gallery"
CHROMIUM = "/usr/bin/chromium"
WIDTHS = (1000, 1600)
AGENTS = [("cartpole-dt", "cartpole"), ("keydoor-dt", "keydoor"), ("pendulum-tt", "pendulum")]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600),
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="run `make test`, which installs chromium")]

# Streamlit idle (its app says the script is not running: the status widget shows only after a delay; no spinner)
# and every chart drawn (Streamlit loads plotly lazily: a skeleton stands in for it after the script has finished)
IDLE = """() => !!document.querySelector('h1')
    && document.querySelector('[data-testid="stApp"]')?.getAttribute('data-test-script-state') === 'notRunning'
    && !document.querySelector('[data-testid="stStatusWidget"]')
    && !document.querySelector('[data-testid="stSpinner"], [data-testid="stSkeleton"]')
    && [...document.querySelectorAll('[data-testid="stPlotlyChart"]')].every(p => p.querySelector('.main-svg'))"""

# per chart: its SVG box and the boxes of its text; per page: headings cut by their container
MEASURE = """() => {
    const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
    const seen = b => b[2] - b[0] > 0.5 && b[3] - b[1] > 0.5;
    const charts = [...document.querySelectorAll('.js-plotly-plot')].map((p, i) => {
        const svg = p.querySelector('.main-svg'), holder = p.closest('[data-testid="stPlotlyChart"]') || p.parentElement;
        const parts = [];
        const add = (kind, e) => { const b = box(e); if (seen(b)) parts.push({kind, text: (e.textContent || '').slice(0, 80), box: b}); };
        p.querySelectorAll('.infolayer .gtitle').forEach(e => add('title', e));
        p.querySelectorAll('.infolayer text[class$="title"]:not(.gtitle)').forEach(e => add('axis title', e));
        p.querySelectorAll('.infolayer .legend').forEach(e => add('legend', e));
        p.querySelectorAll('.annotation').forEach(e => add('annotation', e));
        return {index: i, title: (p.layout && p.layout.title && p.layout.title.text) || '', svg: box(svg),
                container: box(holder), parts};
    });
    // text with no other way to be read: headings, button labels, metrics (a select box shows its whole value open)
    const cut = [...document.querySelectorAll(['h1', 'h2', 'h3', 'button *', '[data-testid="stMetricValue"] *',
                                               '[data-testid="stMetricLabel"] *'].map(s => '[data-testid="stMain"] ' + s).join(', '))]
        .filter(e => e.textContent.trim() && e.scrollWidth > e.clientWidth + 1).map(e => e.textContent.slice(0, 80));
    return {charts, cut_headings: cut,
            exceptions: document.querySelectorAll('[data-testid="stException"]').length,
            errors: [...document.querySelectorAll('[data-testid="stAlertContentError"]')].map(e => e.innerText.slice(0, 300))};
}"""


def inside(b, outer, tol=1.0) -> bool:
    return b[0] >= outer[0] - tol and b[1] >= outer[1] - tol and b[2] <= outer[2] + tol and b[3] <= outer[3] + tol


def overlap(a, b, tol=1.0) -> bool:
    return min(a[2], b[2]) - max(a[0], b[0]) > tol and min(a[3], b[3]) - max(a[1], b[1]) > tol


def problems(seen: dict) -> list[str]:
    """Every clipped or overlapping text on one page at one width, as sentences."""
    out = [f"text cut by its container: {h!r}" for h in seen["cut_headings"]]
    for c in seen["charts"]:
        name = f"chart {c['index']} ({c['title'][:60]!r})"
        if c["svg"][2] > c["container"][2] + 1 or c["svg"][0] < c["container"][0] - 1:
            out.append(f"{name}: its SVG {c['svg']} is wider than its container {c['container']}")
        for p in c["parts"]:
            if not inside(p["box"], c["svg"]):
                out.append(f"{name}: {p['kind']} {p['text']!r} at {[round(v) for v in p['box']]} outside the SVG "
                           f"{[round(v) for v in c['svg']]}")
        titles = [p for p in c["parts"] if p["kind"] == "title"]
        for leg in (p for p in c["parts"] if p["kind"] == "legend"):
            out += [f"{name}: the legend overlaps the title {t['text']!r}" for t in titles if overlap(leg["box"], t["box"])]
    return out


def pages() -> list[tuple[str, str]]:
    from ui.nav import PAGES

    return [(url or "", title) for _, title, _, url in PAGES]


def wait_idle(page) -> None:
    """The page's script finished and its charts are drawn, and it stays so for half a second (a query-parameter write
    or a fragment can start another run just after the first)."""
    for _ in range(3):
        page.wait_for_function(IDLE, timeout=300_000)
        page.wait_for_timeout(500)
        if page.evaluate(IDLE):
            return


def widths(agent: str, path: str) -> tuple[int, ...]:
    """1000 px for every page of every agent; 1600 px for every page once, the agents taking turns (page i: agent
    i mod 3), so each page and each agent is seen at both widths without walking every pair twice."""
    i = [p for p, _ in pages()].index(path)
    return WIDTHS if AGENTS[i % len(AGENTS)][0] == agent else WIDTHS[:1]


# (agent, page): a text the page shows once its analysis is drawn (the walk reads it; tests/test_browser.py walks the
# pages whose agents the gallery has not)
DRAWN = {
    ("cartpole-dt", "Attention"): "Where the action token looks",
    ("cartpole-dt", "Return_conditioning"): "Return conditioning: achieved vs target return",
    ("keydoor-dt", "Credit_assignment"): "randomized",
    ("cartpole-dt", "Embeddings"): "hidden states (PCA)",
    ("keydoor-dt", "Circuits"): "Activation patching: the residual stream",
}


@pytest.fixture(scope="module")
def walk(streamlit_url):
    """{(agent, page path, width): what MEASURE saw}, screenshots saved on the way; the browser modules' one server
    (tests/conftest.py)."""
    from playwright.sync_api import sync_playwright

    import shutil

    seen, url = {}, streamlit_url
    shutil.rmtree(GALLERY, ignore_errors=True)   # the folder shows this walk only
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": WIDTHS[0], "height": 1000})
        for agent, dataset in AGENTS:
            (GALLERY / agent).mkdir(parents=True, exist_ok=True)
            for path, _ in pages():
                tab.set_viewport_size({"width": WIDTHS[0], "height": 1000})
                tab.goto(f"{url}/{path}?agent={agent}&dataset={dataset}")
                for w in widths(agent, path):   # the same page resized: Streamlit and plotly lay it out again, no rerun
                    tab.set_viewport_size({"width": w, "height": 1000})
                    tab.wait_for_timeout(300)
                    wait_idle(tab)
                    seen[agent, path or "Home", w] = tab.evaluate(MEASURE)
                    if (text := DRAWN.get((agent, path))) is not None:
                        seen[agent, path or "Home", w]["drawn"] = {text: tab.get_by_text(text).count(),
                                                                   agent: tab.get_by_text(agent).count()}
                    tall = tab.evaluate("() => { const m = document.querySelector('[data-testid=\"stMain\"]');"
                                        " return m ? m.scrollHeight : document.body.scrollHeight; }")
                    tab.set_viewport_size({"width": w, "height": int(min(max(tall, 1000), 12_000))})
                    tab.wait_for_timeout(300)
                    name = (path or "Home") + ("" if w == WIDTHS[0] else f"_{w}")
                    tab.screenshot(path=str(GALLERY / agent / f"{name}.png"), full_page=True)
        browser.close()
    (GALLERY / "boxes.json").write_text(json.dumps({"|".join(map(str, k)): v for k, v in seen.items()}, indent=1))
    return seen


def test_gallery_has_every_page_for_three_agents_without_errors(walk):
    names = [path or "Home" for path, _ in pages()]
    assert len(names) == 12
    assert sum(len(widths(agent, path)) for agent, _ in AGENTS for path, _ in pages()) == 3 * 12 + 12
    for agent, _ in AGENTS:
        for path, _ in pages():
            for w in widths(agent, path):
                shot = GALLERY / agent / f"{path or 'Home'}{'' if w == WIDTHS[0] else f'_{w}'}.png"
                assert shot.stat().st_size > 10_000, shot   # a real page, not a blank one
    broken = [(k, v["exceptions"], v["errors"]) for k, v in walk.items() if v["exceptions"] or v["errors"]]
    assert not broken, broken
    drawn = sum(len(v["charts"]) for v in walk.values())
    assert drawn >= 60, f"only {drawn} charts drawn on {len(walk)} page views: the walk measured little"
    # each analysis page drew its analysis (its own text) for the agent the URL chose, at every width
    found = {k: v["drawn"] for k, v in walk.items() if "drawn" in v}
    assert len(found) >= len(DRAWN) and all(n >= 1 for v in found.values() for n in v.values()), found


def test_no_chart_text_clipped_or_overlapping_at_1000_and_1600_px(walk):
    found = {f"{agent} {page} @{w}px": p for (agent, page, w), v in walk.items() if (p := problems(v))}
    assert not found, json.dumps(found, indent=1)[:6000]


def test_the_measurement_finds_a_clipped_title():
    """problems() itself: a title past the SVG's right edge and a legend on the title are both reported."""
    chart = {"index": 0, "title": "t", "svg": [0, 0, 500, 400], "container": [0, 0, 500, 400],
             "parts": [{"kind": "title", "text": "t", "box": [10, 5, 520, 30]},
                       {"kind": "legend", "text": "", "box": [300, 20, 480, 50]}]}
    found = problems({"charts": [chart], "cut_headings": []})
    assert len(found) == 2 and "outside the SVG" in found[0] and "overlaps the title" in found[1]
    chart["parts"][0]["box"] = [10, 5, 290, 18]
    assert problems({"charts": [chart], "cut_headings": ["x"]}) == ["text cut by its container: 'x'"]
