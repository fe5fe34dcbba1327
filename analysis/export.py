"""Figure export by file suffix: PNG, SVG, PDF through kaleido (Debian's Chromium), HTML standalone."""
from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go

FORMATS = (".png", ".svg", ".pdf", ".html")


def write_figure(fig: go.Figure, path, width: int = 900, height: int | None = None, scale: float = 2.0) -> Path:
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"cannot export a figure to '{suffix or '(none)'}'; expected one of {', '.join(FORMATS)}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".html":
        fig.write_html(path, include_plotlyjs=True, full_html=True)
    else:
        fig.write_image(path, width=width, height=height or fig.layout.height or 450, scale=scale)
    return path
