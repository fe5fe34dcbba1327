"""seqlens home: the datasets on hand (shipped or uploaded), with their summaries."""
import pandas as pd
import streamlit as st

from analysis.figures import returns_histogram
from models.report import agent_rows
from trajectories import DatasetError
from ui.data import UPLOAD_LIMIT_MB, UPLOAD_TYPES, all_datasets, current_dataset_name, read_upload, uploaded

st.set_page_config(page_title="seqlens", layout="wide")

st.title("seqlens")
st.markdown(
    "Look inside sequence-model RL agents — Decision Transformer, Trajectory Transformer and the Markov and "
    "recurrent baselines they are measured against — on offline datasets. Pick a dataset below, or upload your own "
    "trajectories; the pages in the sidebar analyse whatever is selected here."
)

with st.sidebar:
    upload = st.file_uploader(f"Upload trajectories ({', '.join(UPLOAD_TYPES)}; up to {UPLOAD_LIMIT_MB} MB)",
                              type=UPLOAD_TYPES, key="upload_dataset")
    if upload is not None and upload.file_id != st.session_state.get("last_upload_id"):
        try:
            ds = read_upload(upload)
        except DatasetError as e:
            st.error(str(e))  # the previous selection stays as it was
        else:
            uploaded()[upload.name] = ds
            st.session_state["dataset"] = st.session_state["dataset_select"] = f"upload: {upload.name}"
            st.session_state["last_upload_id"] = upload.file_id
            st.success(f"Loaded {upload.name}: {ds.n_episodes} episodes, {ds.n_transitions} steps.")

datasets = all_datasets()
if not datasets:
    st.warning("No datasets found: run `make sample-data` to generate the shipped ones, or upload a file.")
    st.stop()

rows = []
for name, ds in datasets.items():
    s = ds.summary()
    rows.append({"dataset": name, "environment": s["env_id"] or "—", "episodes": s["n_episodes"],
                 "steps": s["n_transitions"], "obs dim": s["obs_dim"],
                 "actions": f"{s['n_actions']} discrete" if s["discrete"] else f"{s['act_dim']}-d continuous",
                 "return min": s["return_min"], "return mean": s["return_mean"], "return max": s["return_max"]})
st.subheader("Datasets")
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
             column_config={k: st.column_config.NumberColumn(format="%.1f") for k in ("return min", "return mean", "return max")})

names = list(datasets)
if st.session_state.get("dataset_select") not in names:
    st.session_state["dataset_select"] = current_dataset_name()
chosen = st.selectbox("Selected dataset", names, key="dataset_select")
st.session_state["dataset"] = chosen
st.query_params["dataset"] = chosen
ds = datasets[chosen]
s = ds.summary()

cols = st.columns(5)
cols[0].metric("Episodes", f"{s['n_episodes']:,}")
cols[1].metric("Steps", f"{s['n_transitions']:,}")
cols[2].metric("Return min", f"{s['return_min']:.4g}")
cols[3].metric("Return mean", f"{s['return_mean']:.4g}")
cols[4].metric("Return max", f"{s['return_max']:.4g}")
st.plotly_chart(returns_histogram(ds.episode_returns, f"Episode returns — {chosen} ({s['n_episodes']} episodes)"),
                width="stretch", key="returns_hist", theme=None)  # theme=None: the same look as exports
st.caption(f"Observations: {', '.join(ds.obs_names)}. Actions: {', '.join(ds.act_names)}. "
           "Return conditioning is only learnable when returns are spread from low to near-optimal.")

st.subheader("Shipped agents")
st.caption("Decision Transformers, Trajectory Transformers and their Markov / recurrent baselines, trained on the "
           "datasets above by `make sample-agents`; evaluation as stored in each agent's config.json.")
agents = agent_rows()
if agents:
    st.dataframe(pd.DataFrame(agents).drop(columns=["size_mb"]), hide_index=True, width="stretch", key="agents_table",
                 height=35 * (len(agents) + 1) + 3,
                 column_config={"evaluation": st.column_config.TextColumn("evaluation (target → mean [95% CI])", width="large")})
else:
    st.info("No shipped agents found: run `make sample-agents`.")
