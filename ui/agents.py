"""Cached agent loading and the session's agent selection (shipped, local files opened in place, or uploaded), like
ui/data.py for datasets."""
from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

from analysis.core.cache import shared
from analysis.core.identity import agent_key, stamp_agent
from models.errors import AgentError
from models.shipped import AGENT_DIR, shipped_agents
from ui import local as local_files
from ui.session import owner as session_owner
from ui.session import shared_with_spinner

AGENT_UPLOAD_TYPES = ["zip", "pt", "pth", "pkl", "bin"]   # pickles are accepted only to be refused with a reason
AGENT_UPLOAD_LIMIT_MB = 50
DEFAULT_AGENT = "cartpole-dt"
VARIANTS_KEPT = 64   # agents as sessions' Home choices make them (ui.agents.agent_in_session)
SHIPPED_KEPT = 64    # shipped agents loaded (there are about 20)


def load_shipped(path: str, mtime: float):  # mtime in the key: a retrained agent reloads
    """A shipped agent, a shared object of the one cache: loaded once per process per (path, mtime), never changed."""
    def make():
        import torch

        from models import load_agent

        torch.set_num_threads(1)   # small models, many small ops: threads only contend
        return stamp_agent(load_agent(path).eval())

    return shared_with_spinner("shipped_agent", (path, mtime), make, SHIPPED_KEPT, "Loading agent…")


def shipped_paths() -> dict[str, Path]:
    return shipped_agents()


def uploaded_agents() -> dict:
    """This session's uploaded agents (never shared between browser sessions)."""
    return st.session_state.setdefault("uploaded_agents", {})


def agent_names() -> list[str]:
    return list(shipped_paths()) + list(local_files.entries("agent")) + [f"upload: {k}" for k in uploaded_agents()]


def get_agent(name: str):
    if name.startswith("upload: "):
        return uploaded_agents()[name[len("upload: "):]]
    if name.startswith(local_files.PREFIX):
        return local_files.entries("agent")[name].obj
    path = shipped_paths()[name]
    return load_shipped(str(path), (path / "model.safetensors").stat().st_mtime)


def agent_path(name: str) -> str | None:
    """Where a shipped or local agent lives (for bundle manifests); uploads have no path to remake from."""
    if (local_path := local_files.path_of("agent", name)) is not None:
        return str(local_path)
    p = shipped_paths().get(name)
    return str(p.relative_to(AGENT_DIR.parent.parent)) if p is not None else None


def read_agent_upload(file):
    """Parse an uploaded agent (a zip of a checkpoint or HF save_pretrained directory); AgentError on any problem."""
    from models import load_agent

    if file.size > AGENT_UPLOAD_LIMIT_MB * 2**20:
        raise AgentError(f"{file.name} is {file.size / 2**20:.0f} MB; agent uploads are limited to {AGENT_UPLOAD_LIMIT_MB} MB.")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / (Path(file.name).name or "agent.zip")   # the user's name, so messages name their file
        path.write_bytes(file.getvalue())
        try:
            return stamp_agent(load_agent(path).eval())
        except AgentError as e:
            raise AgentError(str(e).replace(str(path), file.name)) from None


def current_agent_name() -> str | None:
    names = agent_names()
    chosen = st.session_state.get("agent")
    if chosen not in names:
        chosen = st.query_params.get("agent")
    if chosen not in names:
        chosen = local_files.first_from_args("agent") or (DEFAULT_AGENT if DEFAULT_AGENT in names else (names[0] if names else None))
    return chosen


NO_ENV = "none (offline analyses only)"
STORED = "stored with the agent"
RAW = "raw observations (no normalisation)"


def agent_in_session(name: str, agent, dataset_name: str | None):
    """The agent as this session uses it: acting in the environment chosen on Home (for one that names none, or
    one this machine cannot make), normalising states as chosen there (an agent without statistics gets the
    selected dataset's by default, as its training code did), with the chosen return-to-go scale. A variant that
    shares the weights; the (shared, cached) agent itself never changes."""
    from models.env_choice import with_choices
    from ui.data import all_datasets

    env = st.session_state.get("env") or st.query_params.get("env")
    stored = agent.config.state_mean is not None or agent.config.state_std is not None   # DT-Atari: std 255 alone
    norm = st.session_state.get("norm") or (STORED if stored else dataset_name)
    scale = st.session_state.get("rtg_scales", {}).get(name)
    key = (name, agent_key(agent), env, norm, scale)
    use_env = env and env != NO_ENV and (not agent.config.env_id or getattr(agent, "notes", None))
    data = all_datasets()[norm] if norm not in (None, "", RAW, STORED) and norm in all_datasets() else None
    new_scale = float(scale) if scale and float(scale) != agent.config.rtg_scale else None

    def make():
        try:   # the same variants, in the same order, as cli.py's --env / --raw-inputs / --normalize-from / --rtg-scale
            out = with_choices(agent, env if use_env else None, data, new_scale, raw_inputs=norm == RAW, source=norm,
                               name=name)
        except AgentError:
            out = agent   # Home says why; the pages run with the agent as loaded
        return stamp_agent(out) if out is not agent else agent

    # a shared object of the one cache owned by the sessions that use it: gone with the last of them
    return shared("agent_variant", key, make, VARIANTS_KEPT, owner=session_owner())
