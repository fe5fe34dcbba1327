"""The upload widgets (home page and Dataset page): a good file is added to this session and selected; a bad
one gets one sentence and changes nothing that was loaded."""
from __future__ import annotations

import logging

import streamlit as st

from models.errors import AgentError
from trajectories import DatasetError
from trajectories.limits import human_bytes, limits
from ui.agents import AGENT_UPLOAD_LIMIT_MB, AGENT_UPLOAD_TYPES, read_agent_upload, uploaded_agents
from ui.data import UPLOAD_LIMIT_MB, UPLOAD_TYPES, read_upload, uploaded
from ui.text import md_escape

log = logging.getLogger("seqlens.uploads")


def upload_widget(key: str, label: str, types, reader, store: dict, select_key: str, error_types, describe):
    """One uploader: a good file is added and selected; a bad one gets one sentence and changes nothing."""
    file = st.file_uploader(label, type=types, key=key)
    if file is not None and file.file_id != st.session_state.get(f"{key}_last"):
        st.session_state[f"{key}_last"] = file.file_id
        try:
            obj = reader(file)
        except error_types as e:
            st.session_state[f"{key}_error"] = str(e)
        except Exception as e:  # noqa: BLE001 - a reader bug must still be a sentence, never a traceback page
            log.exception("upload %s could not be read", file.name)
            detail = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            st.session_state[f"{key}_error"] = f"{file.name} could not be read ({type(e).__name__}: {detail})."
        else:
            store[file.name] = obj
            st.session_state[select_key] = st.session_state[f"{select_key}_select"] = f"upload: {file.name}"
            st.session_state.pop(f"{key}_error", None)
            dropped = keep_within_limits(store, file.name, obj)
            note = f" Removed the oldest upload{'s' if len(dropped) > 1 else ''} ({', '.join(dropped)}) to stay within " \
                   f"this session's limit of {limits().session_uploads} uploads and {human_bytes(limits().session_upload_bytes)}." if dropped else ""
            notes = " ".join(getattr(obj, "notes", None) or [])   # e.g. an environment this server cannot make
            st.session_state[f"{key}_ok"] = f"Loaded {file.name}: {describe(obj)}.{note}{' ' + notes if notes else ''}"
    if st.session_state.get(f"{key}_error"):
        st.error(md_escape(st.session_state[f"{key}_error"]))   # the previous selection stays as it was; the sentence
        # quotes the file's name and what the reader found: shown as the characters they are, never as Markdown
    elif st.session_state.get(f"{key}_ok"):
        st.success(md_escape(st.session_state[f"{key}_ok"]))


def upload_bytes(obj) -> int:
    """Memory an upload holds: a Dataset's arrays or an agent's tensors."""
    if hasattr(obj, "state_dict"):
        return sum(t.numel() * t.element_size() for t in obj.state_dict().values())
    return sum(getattr(obj, k).nbytes for k in ("observations", "actions", "rewards", "terminated", "truncated"))


def keep_within_limits(store: dict, name: str, obj) -> list[str]:
    """Record this upload; drop this session's oldest uploads (datasets and agents alike) past the limits.
    Returns the names dropped (never the one just added)."""
    order = st.session_state.setdefault("upload_order", [])   # (store, name, bytes), oldest first
    order[:] = [o for o in order if not (o[0] is store and o[1] == name)] + [(store, name, upload_bytes(obj))]
    lim, dropped = limits(), []
    while len(order) > 1 and (len(order) > lim.session_uploads or sum(o[2] for o in order) > lim.session_upload_bytes):
        old_store, old_name, _ = order.pop(0)
        old_store.pop(old_name, None)
        dropped.append(old_name)
    return dropped


def dataset_uploader() -> None:
    upload_widget("upload_dataset", f"Upload trajectories ({', '.join(UPLOAD_TYPES)}; up to {UPLOAD_LIMIT_MB} MB)",
                  UPLOAD_TYPES, read_upload, uploaded(), "dataset", (DatasetError,),
                  lambda d: f"{d.n_episodes} episodes, {d.n_transitions} steps")


def agent_uploader() -> None:
    upload_widget("upload_agent", f"Upload an agent (zip of a seqlens checkpoint or a Hugging Face save_pretrained "
                  f"directory; up to {AGENT_UPLOAD_LIMIT_MB} MB)", AGENT_UPLOAD_TYPES, read_agent_upload,
                  uploaded_agents(), "agent", (AgentError,), lambda a: f"a {a.kind} agent, K = {a.context_length}")
