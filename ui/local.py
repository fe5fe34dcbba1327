"""Files opened in place on the server's own disk, without the upload copy.

Three ways in:
- the command line: `streamlit run app.py -- --data PATH... --agent PATH...` (each flag repeatable, each taking one
  or more paths; `make app DATA=... AGENT=...` passes them), or the variables SEQLENS_LOCAL_DATA /
  SEQLENS_LOCAL_AGENT (os.pathsep-separated). Listed for every session; the first one given is the default
  selection when the URL chooses none. A bad one is skipped: one line on stderr, one sentence on Home.
- the path box on Home ("Open a file on this machine"), shown only when the server listens on a loopback
  address (`server.address` localhost / 127.x / ::1; `make app` sets localhost unless HOST=...). Streamlit
  listens on every interface when server.address is unset, and then anyone who can reach the port could read
  the server's files through the box, so unset counts as *not* local, with or without --data/--agent.
  A typed path is listed for that session only.

Every entry is read by the same readers as uploads (trajectories.load_dataset / models.load_agent, so the
limits in trajectories/limits.py hold; the browser's upload size limit does not apply), cached once per process
on (resolved path, mtime, size) (ui.data.load_local / ui.agents.load_local) and shared, never changed, by every
session. A file that changes on disk is read again; one that vanishes or breaks after it was opened keeps the
version opened before (with a note), so nothing loaded is lost.
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from ui.text import md_escape

ENV = {"data": "SEQLENS_LOCAL_DATA", "agent": "SEQLENS_LOCAL_AGENT"}
FLAG = {"data": "--data", "agent": "--agent"}
PREFIX = "local: "
MAX_WALK = 100_000   # directory entries looked at for a directory's (mtime, size)
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


@dataclass(frozen=True)
class LocalArgs:
    data: tuple[str, ...] = ()
    agent: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()   # one sentence each: unknown or malformed arguments


@dataclass(frozen=True)
class Opened:
    name: str          # "local: <file or directory name>" (parent folders added only to tell two apart)
    path: Path         # resolved
    obj: object        # the Dataset or agent, shared by every session
    from_args: bool    # given on the command line (else typed in this session's path box)
    note: str | None   # set when the file broke or vanished after it was opened: what is shown is the older version


class _Parser(argparse.ArgumentParser):
    def error(self, message):   # never sys.exit inside the server
        raise ValueError(message)


def parse_args(argv: list[str] | None = None, environ=None) -> LocalArgs:
    """The script's own arguments. argv defaults to sys.argv[1:] when Streamlit runs app.py (it sets
    sys.argv = [script, args after `--`...]); in any other process (tests, `python -c`) to none."""
    if argv is None:
        argv = sys.argv[1:] if sys.argv and Path(sys.argv[0]).name == "app.py" else []
    environ = os.environ if environ is None else environ
    parser = _Parser(prog="app.py", add_help=False)
    for kind in FLAG:
        parser.add_argument(FLAG[kind], dest=kind, nargs="+", action="extend", default=[])
    problems = []
    try:
        ns, unknown = parser.parse_known_args(list(argv))
        found = {kind: list(getattr(ns, kind)) for kind in FLAG}
    except ValueError as e:
        found, unknown = {kind: [] for kind in FLAG}, []
        problems.append(f"Could not read the command-line arguments ({e}), so no file was opened from them.")
    if unknown:
        problems.append(f"Ignored unknown command-line argument{'s' if len(unknown) > 1 else ''} "
                        f"{' '.join(unknown)} (app.py takes --data PATH... and --agent PATH...).")
    for kind, var in ENV.items():
        found[kind] += [p for p in environ.get(var, "").split(os.pathsep) if p.strip()]
    return LocalArgs(tuple(found["data"]), tuple(found["agent"]), tuple(problems))


def resolve(raw: str | Path) -> Path:
    return Path(os.path.expanduser(str(raw).strip())).resolve()


def check_path(path: Path) -> str | None:
    """One sentence if the server cannot read the path at all; None if the readers may try."""
    try:
        exists = path.exists()
    except OSError as e:
        return f"{path} cannot be reached ({e.strerror or type(e).__name__})."
    if not exists:
        return f"{path} does not exist."
    if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
        return f"{path} is not readable by the server (permission denied)."
    return None


_WALKED: dict[str, tuple[float, tuple[int, int]]] = {}   # directory -> (when, signature): one walk per rerun, not per call
WALK_TTL_S = 2.0


def signature(path: Path) -> tuple[int, int]:
    """(newest mtime in ns, size in bytes) of a file, or over the files under a directory (a Minari dataset's
    data/ or an agent's files change inside it, not the directory's own entry)."""
    info = path.stat()
    if not path.is_dir():
        return info.st_mtime_ns, info.st_size
    seen_at, sig = _WALKED.get(str(path), (-WALK_TTL_S, None))
    if time.monotonic() - seen_at < WALK_TTL_S:
        return sig
    newest, total, stack, seen = info.st_mtime_ns, 0, [path], 0
    while stack and seen < MAX_WALK:
        with os.scandir(stack.pop()) as entries:
            for e in entries:
                seen += 1
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                elif e.is_file():
                    s = e.stat()
                    newest, total = max(newest, s.st_mtime_ns), total + s.st_size
    _WALKED[str(path)] = (time.monotonic(), (newest, total))
    return newest, total


def _loader(kind: str):
    if kind == "data":
        from ui.data import load_local
    else:
        from ui.agents import load_local
    return load_local


_LAST_GOOD: dict[tuple[str, str], tuple[int, int]] = {}   # per process, like the cache it points into


def load(kind: str, path: Path) -> tuple[object | None, str | None]:
    """(the shared object, None), or (None, one sentence); (an older version, a note) when the file was opened
    before in this process and cannot be read now."""
    problem = check_path(path)
    sig = None
    if problem is None:
        try:
            sig = signature(path)
        except OSError as e:
            problem = f"{path} could not be read ({e.strerror or type(e).__name__})."
    key = (kind, str(path))
    if sig is not None:
        loaded = _loader(kind)(str(path), *sig)
        if not isinstance(loaded, str):
            _LAST_GOOD[key] = sig
            return loaded, None
        problem = loaded
    if key in _LAST_GOOD:
        older = _loader(kind)(str(path), *_LAST_GOOD[key])
        if not isinstance(older, str):
            return older, f"{problem} Showing the version opened before."
    return None, problem


def unique_names(paths: list[Path], taken: set[str]) -> list[str]:
    """'local: <name>', with parent folders added (fewest first) only where two paths, or a name already
    taken, would otherwise read the same."""
    depth = [1] * len(paths)

    def name(i: int) -> str:
        parts = paths[i].parts
        return PREFIX + "/".join(parts[-depth[i]:]) if depth[i] < len(parts) else PREFIX + str(paths[i])

    while True:
        names = [name(i) for i in range(len(paths))]
        clash = [i for i, n in enumerate(names) if (n in taken or names.count(n) > 1) and depth[i] < len(paths[i].parts)]
        if not clash:
            return names
        for i in clash:
            depth[i] += 1


_SAID: set[str] = set()


def _stderr_once(line: str) -> None:
    """A command-line problem goes to the server's stderr once per process, not once per rerun."""
    if line not in _SAID:
        _SAID.add(line)
        print(line, file=sys.stderr, flush=True)


def session_paths(kind: str) -> list[str]:
    """Paths typed in this session's path box (never seen by other sessions)."""
    return st.session_state.setdefault("local_paths", {}).setdefault(kind, [])


def opened(kind: str) -> tuple[list[Opened], list[str]]:
    """kind 'data' or 'agent': what opens, command-line entries first (named among themselves, so a typed path
    never renames them), and one sentence per command-line path that does not open."""
    cmd = list(dict.fromkeys(resolve(p) for p in getattr(parse_args(), kind)))
    typed = [p for p in dict.fromkeys(Path(p) for p in session_paths(kind)) if p not in cmd]
    out, problems, taken = [], [], set()
    for group, from_args in ((cmd, True), (typed, False)):
        names = unique_names(group, taken)
        taken |= set(names)
        for name, path in zip(names, group):
            obj, message = load(kind, path)
            if obj is not None:
                out.append(Opened(name, path, obj, from_args, message))
            elif from_args:
                problems.append(f"Skipped {FLAG[kind]} {path}: {message}")
                _stderr_once(f"seqlens: skipped {FLAG[kind]} {path}: {message}")
            else:
                problems.append(f"Could not open {path} again: {message}")
    return out, problems


def entries(kind: str) -> dict[str, Opened]:
    return {o.name: o for o in opened(kind)[0]}


def first_from_args(kind: str) -> str | None:
    """The first command-line entry that opens: the default selection when the URL chooses none."""
    return next((o.name for o in opened(kind)[0] if o.from_args), None)


def path_of(kind: str, name: str) -> Path | None:
    if not name or not name.startswith(PREFIX):
        return None
    o = entries(kind).get(name)
    return o.path if o else None


def notices() -> None:
    """Home: one warning per command-line argument or path that was skipped, and per file shown in an older version."""
    for line in parse_args().problems:
        _stderr_once(f"seqlens: {line}")
        st.warning(md_escape(line))
    for kind in FLAG:
        items, problems = opened(kind)
        for line in problems:
            st.warning(md_escape(line))
        for o in items:
            if o.note:
                st.warning(md_escape(o.note))


def listens_on_loopback() -> bool:
    """Is the server reachable from this machine only? Unset means every interface (Streamlit's default)."""
    address = (st.get_option("server.address") or "").strip().strip("[]")
    if address.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def describe(kind: str, obj) -> str:
    if kind == "data":
        return f"{obj.n_episodes:,} episodes, {obj.n_transitions:,} steps"
    return f"a {obj.kind} agent, K = {obj.context_length}"


def open_typed(raw: str) -> None:
    """A path typed in the box: added to this session and selected, or one sentence and nothing changes."""
    from models.errors import is_agent_path

    path = resolve(raw)
    problem = check_path(path)
    kind = "agent" if problem is None and is_agent_path(path) else "data"
    obj = None
    if problem is None:
        obj, problem = load(kind, path)
    if obj is None:
        st.session_state["local_error"] = problem
        st.session_state.pop("local_ok", None)
        return
    paths = session_paths(kind)
    if str(path) not in paths:
        paths.append(str(path))
    name = next(o.name for o in opened(kind)[0] if o.path == path)
    select = "dataset" if kind == "data" else "agent"
    st.session_state[select] = st.session_state[f"{select}_select"] = name
    st.session_state.pop("local_error", None)
    notes = " ".join(getattr(obj, "notes", None) or [])
    st.session_state["local_ok"] = f"Opened {path}: {describe(kind, obj)}.{' ' + notes if notes else ''}"


def path_box() -> None:
    """Home's "Open a file on this machine": only when the server listens on a loopback address. Must run
    before the Agent and Dataset selects (it sets their state)."""
    if not listens_on_loopback():
        return
    with st.expander("Open a file on this machine", expanded=bool(st.session_state.get("local_error"))):
        st.caption("A dataset file (.npz, .parquet, .csv, .json, .hdf5), a Minari dataset directory (e.g. "
                   "~/.minari/datasets/mujoco/hopper/medium-v0), or an agent (a checkpoint directory, a zip of one, or "
                   "a Hugging Face save_pretrained directory), read in place by the server. Listed for this session only.")
        with st.form("local_form", border=False):
            typed = st.text_input("Path on this machine", key="local_path",
                                  placeholder="~/.minari/datasets/mujoco/hopper/medium-v0")
            submitted = st.form_submit_button("Open", key="local_open")
        if submitted and typed.strip():
            open_typed(typed)
        if st.session_state.get("local_error"):
            st.error(md_escape(st.session_state["local_error"]))   # the previous selection stays as it was
        elif st.session_state.get("local_ok"):
            st.success(md_escape(st.session_state["local_ok"]))
