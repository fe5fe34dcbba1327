"""Embeddings: the agent's hidden states over a whole dataset, in two dimensions."""
import streamlit as st

from analysis.interp.embeddings import COLOUR_BY, MAX_POINTS
from ui import exports
from ui.page import figure, start
from ui.text import md_escape

sel = start("Embeddings", "Every step of the dataset passes through the model; its hidden state (for a Decision "
            "Transformer, the last layer at the state token that predicts the action) is projected to two "
            "dimensions. Colour by return-to-go, timestep, action or the episode's return to see what the model "
            "organises its memory around. PCA is instant; UMAP shows local structure and takes up to a minute "
            "the first time (results are cached).", needs=("acts",))
agent, ds = sel.agent, sel.dataset
LABELS = {"rtg": "return-to-go", "timestep": "timestep", "action": "action", "episode_return": "episode return"}

c1, c2, c3 = st.columns(3)
method = c1.radio("Projection", ["pca", "umap"], format_func=str.upper, horizontal=True, key="emb_method")
# frame-stack windows cost a conv pass per frame: a 6-layer Atari DT over 100k steps took ~45 s for 2,000 points and
# 10 s for 500 (idle machine), so 200 first there; grids 500
first = 200 if ds.obs_kind == "frame stacks" else 500 if ds.shaped else 2_000
points = c2.select_slider("Points (sampled steps)", [200, 500, 2_000, 5_000, 10_000, MAX_POINTS], first, key="emb_points",
                          help="More points take longer the first time (hidden states of every sampled step); results are cached.")
colour = c3.selectbox("Colour by", COLOUR_BY, format_func=LABELS.get, key="emb_colour")

bar = st.progress(0.0, text="Hidden states…")
try:   # the embedding is computed (once, then cached) inside the figure call, which drives the bar
    made = figure(sel, "embedding", progress=lambda f, m: bar.progress(min(max(f, 0.0), 1.0), text=md_escape(m)),
                  method=method, colour_by=colour, max_points=int(points))
except ValueError as e:   # e.g. too few steps to project
    bar.empty()
    st.error(md_escape(e))
    st.stop()
bar.empty()
collected = []
exports.show(made, "embedding", collected)
exports.bundle_button(collected, "Embeddings", agent, ds, **sel.paths)
