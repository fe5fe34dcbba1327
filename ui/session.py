"""The session as an owner in the one cache (analysis/core/cache.py): what a session made for itself (results of its
uploads, its variants of an agent) goes when the session ends."""
from __future__ import annotations

import uuid
import weakref

import streamlit as st
from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

from analysis.core.cache import purge, release
from ui.text import md_escape


class _SessionOwner:
    """Lives in one session's state: when the session ends and its state is freed, what it owns goes."""

    def __init__(self, session_id: str):
        self.id = session_id
        weakref.finalize(self, release, session_id)


def owner() -> str:
    """This session's id as a cache owner (made on first use, with the finalizer that releases it)."""
    token = st.session_state.get("_cache_owner")
    if token is None:
        ctx = get_script_run_ctx()
        token = st.session_state["_cache_owner"] = _SessionOwner(ctx.session_id if ctx else uuid.uuid4().hex)
    return token.id


def alive(session_id: str) -> bool:
    if not Runtime.exists():   # AppTest: sessions end by dropping their state (see _SessionOwner)
        return True
    return Runtime.instance().is_active_session(session_id)


def forget_ended() -> int:
    """Drop what only sessions the runtime no longer knows owned (results and shared objects)."""
    return purge(alive)


def shared_with_spinner(name: str, key, make, kept: int, message: str):
    """analysis.core.cache.shared with a spinner while the object is made (what st.cache_resource's show_spinner did),
    owned by every session (a file's content, not a session's)."""
    from analysis.core.cache import OBJECTS, SHARED, shared

    if OBJECTS.holds(name, key):
        return shared(name, key, make, kept, owner=SHARED)
    with st.spinner(md_escape(message)):
        return shared(name, key, make, kept, owner=SHARED)
