"""Dataset: browse episodes of the selected dataset — observations, actions, rewards and return-to-go."""
import streamlit as st

from analysis.publish import catalog
from ui import exports
from ui.data import all_datasets, current_dataset_name, dataset_path
from ui.text import md_escape
from ui.uploads import dataset_uploader

st.set_page_config(page_title="seqlens · Dataset", layout="wide")
with st.sidebar:
    dataset_uploader()
st.title("Dataset")
st.markdown("Walk through the episodes of the selected dataset: what the agent saw, what it did, the reward it "
            "got at each step and the return-to-go a Decision Transformer would be conditioned on.")

datasets = all_datasets()
name = current_dataset_name()
if name is None:
    st.warning("No dataset loaded: run `make sample-data` or upload one on the home page.")
    st.stop()
ds = datasets[name]
st.caption(f"**{md_escape(name)}** — {md_escape(ds.env_id or 'unknown environment')}, {ds.n_episodes:,} episodes, "
           f"{ds.n_transitions:,} steps. "
           "Change the dataset on the home page, or upload one in the sidebar.")

order = st.radio("Pick episodes by", ["index", "return rank (best first)"], horizontal=True, key="episode_order")
pos = st.slider("Episode", 0, ds.n_episodes - 1, 0, key="episode_index") if ds.n_episodes > 1 else 0
index = int(ds.episode_returns.argsort()[::-1][pos]) if order.startswith("return") else pos
ep = ds.episode(index)
cols = st.columns(4)
cols[0].metric("Episode", index)
cols[1].metric("Length", len(ep))
cols[2].metric("Return", f"{ep.total_return:.4g}")
cols[3].metric("Ends", "terminated" if ep.terminated[-1] else "truncated" if ep.truncated[-1] else "no flag")

# the catalog's figures (the same files `cli.py export --figure NAME --data FILE` writes), each with its downloads;
# drawn from the dataset alone, no agent and no cached analysis behind them
collected = []
if ds.shaped:   # images, grids, frame stacks: a strip of pictures at chosen steps, not a line per pixel
    st.caption(f"The observations are {md_escape(ds.obs_shape_text)} {md_escape(ds.obs_kind)}: shown as pictures at a few steps "
               "(a line per observation feature needs vector observations).")
    c1, c2 = st.columns([3, 1])
    first, last = c1.slider("Steps shown", 0, len(ep) - 1, (0, len(ep) - 1), key="frame_steps") if len(ep) > 1 else (0, 0)
    frames = c2.selectbox("Frames", [4, 8, 12, 16], index=1, key="frame_count")
    exports.show(catalog.make("episode_frames", None, ds, episode=index, start=first, stop=last, frames=frames),
                 "obs", collected)
else:
    exports.show(catalog.make("episode_observations", None, ds, episode=index), "obs", collected)
for figure_name, key in (("episode_actions", "act"), ("episode_timeline", "rtg")):
    exports.show(catalog.make(figure_name, None, ds, episode=index), key, collected)
with st.expander("All episode returns"):
    exports.show(catalog.make("returns_histogram", None, ds), "dataset_hist", collected)
exports.bundle_button(collected, "Dataset", dataset=ds, data_path=dataset_path(name))
