"""The episode player's browser component: analysis.media.player's data as one self-contained HTML document (ui/player.html:
the frames as base64 images, the per-step overlays as JSON, play / pause / step / scrub / ←→ in JavaScript), shown with
`st.iframe`. Playing never reruns the Streamlit script: the page is drawn once per choice of episode, and every step
after that is drawn by the browser from what it already holds.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from analysis.publish.figures.predictions import PREDICTED, REAL
from analysis.publish.figures.style import PALETTE, TOKEN_COLOURS

TEMPLATE = Path(__file__).with_name("player.html")
STYLE = {"R": TOKEN_COLOURS["return-to-go"], "s": TOKEN_COLOURS["state"], "a": TOKEN_COLOURS["action"],
         "real": REAL, "predicted": PREDICTED, "palette": PALETTE, "grid": "#e6e6e6", "axis": "#444", "cursor": "#444",
         "muted": "#6e6e6e"}
PANEL_PX = 178        # one bar panel (title, subtitle, 118 px chart) and the gap below it
TIMELINE_PX = 30      # the scrubber's row under the frame and the panels, the player's full width


@lru_cache(maxsize=1)
def _template() -> str:
    return TEMPLATE.read_text(encoding="utf-8")


def payload(data) -> dict:
    """What the component embeds: the data's JSON and the template's colours."""
    return {**data.to_json(), "style": STYLE}


def html(data) -> str:
    """The player as one HTML document. The JSON sits in a `<script type="application/json">` with every <, > and &
    escaped (names in the data come from uploaded files: none can close the script or open a tag)."""
    text = json.dumps(payload(data), separators=(",", ":"), allow_nan=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return _template().replace("__DATA__", text, 1)


def height(data) -> int:
    """The component's height in px: the frame with its status, buttons and hint beside the panels, the taller."""
    shown = data.display_size[1] * (0.75 if data.imagined and not data.imagined["why"] else 1) + (
        18 if data.imagined else 0)   # two frames side by side at 3/4 size, with captions
    left = (shown if data.frames is not None else 288 + 60) + 110
    panels = (data.attention is not None) + (data.credit is not None)
    right = (24 if panels else 0) + PANEL_PX * panels
    if data.prediction is not None:
        rows = 1 if data.prediction["kind"] == "return" else min(len(data.prediction["features"]), 12)
        right += 70 + (150 if rows == 1 else 20 * rows + 12) + 36
    return int(max(left, right) + 12 + TIMELINE_PX)


def embedded(srcdoc: str) -> dict:
    """The data a player's HTML embeds (tests: what the browser receives)."""
    start = srcdoc.index('<script id="seqlens-player-data" type="application/json">')
    start = srcdoc.index(">", start) + 1
    return json.loads(srcdoc[start:srcdoc.index("</script>", start)])


def show(data) -> None:
    """The player on the page: `st.iframe` with the HTML document, or on a Streamlit without it (requirements allow
    1.40) `st.components.v1.html`, which newer versions deprecate in st.iframe's favour."""
    import streamlit as st

    if hasattr(st, "iframe"):   # sized to what the browser lays out: height() is the widest layout's, and at a
        st.iframe(html(data), height="content")   # 1000 px viewport it left ~160 px blank under the scrubber
    else:
        import streamlit.components.v1 as components

        components.html(html(data), height=height(data))
