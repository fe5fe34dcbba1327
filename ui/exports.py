"""A figure on a page with its export buttons (PNG, SVG, PDF, HTML, CSV), and the page's bundle (zip).
Files are made only when a button is clicked (deferred data), through one kaleido server per process."""
from __future__ import annotations

import streamlit as st

from analysis.publish.catalog import Figured
from analysis.publish.export import FORMATS, MIME, VIDEO_FORMATS, bundle, figure_bytes, figured_bytes, keep_server_alive
from ui import charts


def _bytes(f: Figured, fmt: str) -> bytes:
    if fmt in ("png", "svg", "pdf"):
        keep_server_alive()
    return figure_bytes(f.figure, fmt, data=f.data)


def show(f: Figured, key: str, collected: list | None = None) -> None:
    """The figure, then a row of download buttons; `collected` gathers the page's figures for its bundle."""
    charts.plotly(f.figure, f"{key}_chart")
    if charts.width() < 400:   # a half column: six columns would cut "PNG" to "P"; the buttons go three a row
        st.caption("Download")
        cols = [c for _ in range(0, len(FORMATS), 3) for c in st.columns(3, gap="small")]
    else:
        first, *cols = st.columns(len(FORMATS) + 1, gap="small")
        first.caption("Download")
    for col, fmt in zip(cols, FORMATS):
        col.download_button(fmt.upper(), data=lambda fmt=fmt: _bytes(f, fmt), file_name=f"{f.name}.{fmt}",
                            mime=MIME[fmt], key=f"{key}_{fmt}", on_click="ignore", width="stretch")
    if collected is not None:
        collected.append(f)


def video_buttons(f: Figured, key: str, collected: list | None = None) -> None:
    """An animated figure's downloads (GIF, MP4 and the CSV of its per-step data), encoded only when clicked."""
    cols = st.columns(len(VIDEO_FORMATS) + 2, gap="small")
    cols[0].caption("Download the episode")
    for col, fmt in zip(cols[1:], (*VIDEO_FORMATS, "csv")):
        col.download_button(fmt.upper(), data=lambda fmt=fmt: figured_bytes(f, fmt), file_name=f"{f.name}.{fmt}",
                            mime=MIME[fmt], key=f"{key}_{fmt}", on_click="ignore", width="stretch")
    if collected is not None:
        collected.append(f)


def bundle_button(figured: list, page: str, agent=None, dataset=None, agent_path=None, data_path=None,
                  compare: dict | None = None) -> None:
    """The page's zip. compare: in compare mode, the second agent ({agent, name, path}; ui.page.Selection.paths): the
    manifest names it and each compared figure's remake line carries --compare."""
    if not figured:
        return
    def make() -> bytes:
        from ui.data import dataset_path   # Home records the statistics' dataset by name: its file for the remake line

        keep_server_alive()
        return bundle(figured, agent=agent, dataset=dataset, agent_path=agent_path, data_path=data_path, page=page,
                      dataset_paths=dataset_path, compare=compare)
    videos = sum(getattr(f, "video", None) is not None for f in figured)
    kinds = ", ".join((["PNG, SVG, PDF, HTML"] if videos < len(figured) else []) + (["GIF, MP4"] if videos else []))
    st.download_button((f"Download all {len(figured)} figures of this page" if len(figured) > 1 else "Download this page's figure")
                       + f" (zip: {kinds}, CSV + manifest)",
                       data=make, file_name=f"seqlens-{page.lower().replace(' ', '-')}.zip", mime=MIME["zip"],
                       key=f"bundle_{page}", on_click="ignore", type="primary")
