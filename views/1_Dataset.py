"""Dataset: browse episodes of the selected dataset — observations, actions, rewards and return-to-go."""
import streamlit as st

from analysis.publish.figures import episode_signals, episode_timeline, returns_histogram
from analysis.publish.figures.text import plain
from ui import charts
from ui.data import all_datasets, current_dataset_name
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

labels = ds.metadata.get("action_labels") if ds.discrete else None
if ds.discrete and not labels:
    labels = [str(a) for a in range(ds.n_actions)]
charts.plotly(episode_signals(ep.observations, ds.obs_names, f"Observations — episode {index}", "value"), "obs_chart")
charts.plotly(episode_signals(ep.actions, ds.act_names, f"Actions — episode {index}", "action", labels), "act_chart")
charts.plotly(episode_timeline(ep.rewards, ep.returns_to_go, f"Reward and return-to-go — episode {index}"), "rtg_chart")
with st.expander("All episode returns"):
    charts.plotly(returns_histogram(ds.episode_returns, f"Episode returns — {plain(name)}"), "dataset_hist")
