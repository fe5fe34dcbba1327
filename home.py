"""seqlens home page: choose an agent and a dataset (shipped, opened in place from this machine, or uploaded); their
cards; links to the analyses."""
from pathlib import Path

import pandas as pd
import streamlit as st

from analysis.publish import catalog
from models.errors import AgentError
from models.checks import check_dataset
from models.report import agent_rows
from ui import exports
from ui.agents import NO_ENV, RAW, STORED, agent_names, current_agent_name, get_agent
from ui.data import all_datasets, current_dataset_name, dataset_path
from ui.local import notices as local_notices
from ui.local import path_box, path_of
from ui.nav import write
from ui.text import md_escape
from ui.uploads import agent_uploader, dataset_uploader


def _choose(label: str, options: list[str], key: str, current: str, help: str, default: str | None = None):
    """A select of the selection's `key`: it shows the session's choice (`current`, which an upload, a path opened,
    a link or another page may have changed since Home last drew it), and a pick becomes the choice before the run
    (_picked), so Home and the pages never disagree; the URL carries it (ui/nav.py). `default`: what the pages use
    when nothing is chosen; left unchosen until picked (a first visit writes nothing new into the URL, so back from
    Home leaves Home)."""
    st.session_state[f"{key}_select"] = current
    chosen = st.selectbox(label, options, key=f"{key}_select", help=help, on_change=_picked, args=(key,))
    if chosen != default or st.session_state.get(key) is not None:
        st.session_state[key] = chosen
    write()
    return chosen


def _picked(key: str) -> None:
    st.session_state[key] = st.session_state[f"{key}_select"]


def _environment(agent) -> None:
    """For an agent that names no environment (or one this machine cannot make): the registered environments
    whose spaces fit it; the choice is part of the selection and the URL (?env=)."""
    from models.env_choice import fitting_envs

    options = [NO_ENV] + fitting_envs(agent)
    name = current_dataset_name()
    ds_env = all_datasets()[name].env_id if name else None
    current = st.session_state.get("env") or (ds_env if ds_env in options else NO_ENV)
    _choose("Environment", options, "env", current if current in options else NO_ENV,
            "The agent names no environment it can act in here. The return sweep and the context runs need one; "
            "the other analyses work on the dataset alone. Listed: registered environments whose observation and "
            "action spaces fit the agent.")


def _inputs(agent_name: str, agent) -> None:
    """Which state statistics and return-to-go scale the agent's inputs use (an agent without statistics gets
    the selected dataset's, as its training code did; raw observations only when chosen)."""
    datasets = all_datasets()
    fits = [f for f, d in datasets.items() if d.obs_dim == agent.obs_dim]
    options = ([STORED] if agent.config.state_mean is not None else []) + fits + [RAW]
    default = STORED if agent.config.state_mean is not None else current_dataset_name()
    with st.expander("Inputs: state normalisation and return-to-go scale", expanded=agent.config.state_mean is None):
        if agent.config.state_mean is None:
            st.caption("This agent carries no state statistics (Hugging Face imports do not): its training code "
                       "normalised observations with its dataset's mean and std. Pick that dataset.")
        current = st.session_state.get("norm", default)
        _choose("Normalise states with", options, "norm",
                current if current in options else (default if default in options else options[0]),
                "Mean and standard deviation of every observation feature of the chosen dataset.", default=default)
        if agent.has("return_conditioned"):
            scales = st.session_state.setdefault("rtg_scales", {})   # per agent: each has its own
            scale = st.number_input("Return-to-go scale", min_value=1e-6, value=float(scales.get(agent_name, agent.config.rtg_scale)),
                                    format="%g", key=f"rtg_scale_{agent_name}",
                                    help="Returns-to-go are divided by this before the model reads them.")
            scales[agent_name] = float(scale)


def home():
    st.title("seqlens")
    st.markdown(
        "Look inside sequence-model RL agents — Decision Transformer, Trajectory Transformer and the Markov and "
        "recurrent baselines they are measured against — on offline datasets. Choose an agent and a dataset here "
        "(or upload your own); the pages in the sidebar analyse the pair: **Attention**, **Return conditioning**, "
        "**Credit assignment**, **Predicted vs real**, **Embeddings**, **Context & memory**, **Circuits**, and the "
        "**Episode player** (the episode rendered, step by step, beside what the agent computes). Every figure downloads "
        "as PNG, SVG, PDF, HTML and CSV."
    )

    with st.sidebar:
        dataset_uploader()
        agent_uploader()
        path_box()   # before the selects: a path opened here becomes their choice
    local_notices()

    datasets = all_datasets()
    names = agent_names()
    if not datasets or not names:
        st.warning("Nothing to analyse yet: run `make sample-data` and `make sample-agents`, or upload files in the sidebar.")
        return

    left, right = st.columns(2)
    with left:
        agent_name = _choose("Agent", names, "agent", current_agent_name(),
                             "Shipped agents, then files opened in place on this machine, then this session's uploads.")
        agent = get_agent(agent_name)
        card = agent.card()
        st.markdown(f"**{md_escape(card['kind'].upper())}** · {md_escape(card['obs_dim'])}-d observations · "
                    f"{md_escape(card['n_actions']) + ' discrete actions' if card['discrete'] else md_escape(card['act_dim']) + '-d continuous actions'} · "
                    f"context K = {md_escape(card['context_length'])} · {card['n_params']:,} parameters")
        if (where := path_of("agent", agent_name)) is not None:
            st.caption(f"Read in place from {md_escape(where)}")
        for note in getattr(agent, "notes", None) or []:
            st.caption(md_escape(note))
        if not agent.config.env_id or getattr(agent, "notes", None):
            _environment(agent)
        _inputs(agent_name, agent)
        facts = {k: v for k, v in card.items() if k not in ("evaluation", "kind", "obs_dim", "act_dim", "discrete", "n_actions",
                                                            "context_length", "n_params") and v is not None}
        st.dataframe(pd.DataFrame({"": list(facts), "value": [str(v) for v in facts.values()]}), hide_index=True,
                     width="stretch", key="agent_card")
        if card.get("evaluation"):
            ev = pd.DataFrame(card["evaluation"]).drop(columns=["returns", "std_return"], errors="ignore")
            st.caption("Evaluation stored with the agent (mean return per target, 95% bootstrap CI):")
            st.dataframe(ev, hide_index=True, width="stretch", key="agent_eval",
                         column_config={c: st.column_config.NumberColumn(format="%.4g") for c in ev.columns if c != "episodes"})
    with right:
        dataset_name = _choose("Dataset", list(datasets), "dataset", current_dataset_name(),
                               "Shipped datasets, then files opened in place on this machine, then this session's uploads.")
        ds = datasets[dataset_name]
        s = ds.summary()
        cols = [c for _ in range(2) for c in st.columns(2)]   # four in a row cut "Episodes" to "Ep…" at 1000 px
        cols[0].metric("Episodes", f"{s['n_episodes']:,}", help=f"{s['n_transitions']:,} steps")
        cols[1].metric("Return min", f"{s['return_min']:.4g}")
        cols[2].metric("Return mean", f"{s['return_mean']:.4g}")
        cols[3].metric("Return max", f"{s['return_max']:.4g}")
        hist = catalog.make("returns_histogram", None, ds, bins=30)   # the catalog's figure: `cli.py export` writes the same
        exports.show(hist, "returns_hist")
        exports.bundle_button([hist], "Home", dataset=ds, data_path=dataset_path(dataset_name))
        st.caption(f"{md_escape(ds.env_id or 'unknown environment')} · {s['n_transitions']:,} steps · observations: "
                   f"{md_escape(', '.join(ds.obs_names))} · actions: {md_escape(', '.join(ds.act_names))}")
        if (where := path_of("data", dataset_name)) is not None:
            st.caption(f"Read in place from {md_escape(where)}")

    try:
        check_dataset(agent, ds)
    except AgentError as e:
        st.warning(f"{md_escape(e)} The analysis pages need a matching pair: pick another agent or dataset.")
    else:
        trained_on = agent.config.dataset.get("name")
        same = trained_on is None or Path(trained_on).stem == Path(dataset_name.removeprefix("local: ")).stem
        note = "" if same else f" (it was trained on {trained_on})"
        st.success(f"**{md_escape(agent_name)}** can read **{md_escape(dataset_name)}**{md_escape(note)}. Open an analysis "
                   "page in the sidebar.")

    with st.expander("All datasets"):
        rows = []
        for name, d in datasets.items():
            sm = d.summary()
            rows.append({"dataset": name, "environment": sm["env_id"] or "—", "episodes": sm["n_episodes"],
                         "steps": sm["n_transitions"], "obs dim": sm["obs_dim"],
                         "actions": f"{sm['n_actions']} discrete" if sm["discrete"] else f"{sm['act_dim']}-d continuous",
                         "return min": sm["return_min"], "return mean": sm["return_mean"], "return max": sm["return_max"]})
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="datasets_table",
                     column_config={k: st.column_config.NumberColumn(format="%.1f") for k in ("return min", "return mean", "return max")})

    with st.expander("All shipped agents", expanded=True):
        st.caption("Trained on the shipped datasets by `make sample-agents`; evaluation as stored in each agent's config.json.")
        rows = agent_rows()
        if rows:
            table = pd.DataFrame(rows).drop(columns=["size_mb"]).astype({"episodes": str})   # "—" for models not run
            st.dataframe(table, hide_index=True, width="stretch", key="agents_table",
                         height=35 * (len(rows) + 1) + 3,
                         column_config={"evaluation": st.column_config.TextColumn("evaluation (target → mean [95% CI])", width="large")})


home()
