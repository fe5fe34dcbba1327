"""Files opened in place on the server's own disk, without the upload copy.

Three ways in:
- the command line: `streamlit run app.py -- --data PATH... --agent PATH...` (each flag repeatable, each taking one
  or more paths; `make app DATA=... AGENT=...` passes them), or the variables SEQLENS_LOCAL_DATA /
  SEQLENS_LOCAL_AGENT (os.pathsep-separated). Listed for every session; the first one given is the default
  selection when the URL chooses none. A bad one is skipped: one line on stderr, one sentence on Home.
- the path box on Home ("Open a file on this machine"), shown only when the operator asked for it when starting
  the server: `make app LOCAL=1`, i.e. `streamlit run app.py -- --local`. Never inferred from the bind address:
  a reverse proxy on the same machine reaches a localhost server too, and every proxied user would get a box that
  opens the server's files. A typed path is listed for that session only.

Every entry is read by the same readers as uploads (trajectories.load_dataset / models.load_agent, so the
limits in trajectories/limits.py hold; the browser's upload size limit does not apply), cached once per process
(open_dataset / open_agent) on the resolved path and a change key (`signature`: size, mtime, inode
change time and a hash of the first and last 64 KiB of each file, over the files of a directory as
trajectories/walk.py lists them) and shared, never changed, by every session. A file that changes on disk is read
again, even rewritten at the same size with its mtime set back; one that vanishes or breaks after it was opened
keeps the version opened before (with a note), so nothing loaded is lost.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import stat as stat_mod
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from ui.session import shared_with_spinner
from ui.text import md_escape

ENV = {"data": "SEQLENS_LOCAL_DATA", "agent": "SEQLENS_LOCAL_AGENT"}
FLAG = {"data": "--data", "agent": "--agent"}
PATH_BOX_FLAG = "--local"   # `make app LOCAL=1`: Home shows the path box
PREFIX = "local: "
HASH_BLOCK = 64 << 10       # the first and last 64 KiB of each file go into its change key
HASH_BUDGET = 32 << 20      # bytes read for one directory's key; files past it are keyed by their stat alone


@dataclass(frozen=True)
class LocalArgs:
    data: tuple[str, ...] = ()
    agent: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()   # one sentence each: unknown or malformed arguments
    path_box: bool = False           # --local: the operator asked for Home's path box


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
    parser.add_argument(PATH_BOX_FLAG, dest="path_box", action="store_true")
    problems, path_box = [], False
    try:
        ns, unknown = parser.parse_known_args(list(argv))
        found = {kind: list(getattr(ns, kind)) for kind in FLAG}
        path_box = ns.path_box
    except ValueError as e:
        found, unknown = {kind: [] for kind in FLAG}, []
        problems.append(f"Could not read the command-line arguments ({e}), so no file was opened from them.")
    if unknown:
        problems.append(f"Ignored unknown command-line argument{'s' if len(unknown) > 1 else ''} "
                        f"{' '.join(unknown)} (app.py takes --data PATH..., --agent PATH... and --local).")
    for kind, var in ENV.items():
        found[kind] += [p for p in environ.get(var, "").split(os.pathsep) if p.strip()]
    return LocalArgs(tuple(found["data"]), tuple(found["agent"]), tuple(problems), path_box)


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
    if not (path.is_file() or path.is_dir()):   # a pipe would block the first read forever
        return f"{path} is not a regular file or folder (a pipe, socket or device)."
    if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
        return f"{path} is not readable by the server (permission denied)."
    return None


WALK_TTL_S = 2.0   # a directory's signature is walked at most once per rerun (a shared object of the one cache)
WALKS_KEPT = 64


def _head_tail(path, size: int, h) -> int:
    """Feed the first and last HASH_BLOCK bytes of a regular file to h; the bytes read."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat_mod.S_ISREG(os.fstat(fd).st_mode):   # swapped for a pipe or device since the stat: not read
            return 0
        head = os.pread(fd, HASH_BLOCK, 0)
        tail = os.pread(fd, HASH_BLOCK, max(len(head), size - HASH_BLOCK)) if size > HASH_BLOCK else b""
    finally:
        os.close(fd)
    h.update(len(head).to_bytes(8, "little") + head + len(tail).to_bytes(8, "little") + tail)
    return len(head) + len(tail)


def signature(path: Path) -> tuple[int, int, str]:
    """The change key of a file, or of the files under a directory (a Minari dataset's data/ or an agent's files
    change inside it, not the directory's own entry): (newest mtime in ns, total size, a hash of every entry's
    inode, inode change time (set by the kernel: user code cannot set it back, as it can an mtime) and the first
    and last 64 KiB of its content). A directory is listed by trajectories/walk.py: no link followed (a link counts
    by its own lstat), bounded (one sentence, as a DatasetError, past SEQLENS_MAX_WALK_ENTRIES / _DEPTH); its
    files' content is hashed up to HASH_BUDGET bytes in path order, the rest keyed by their stat alone."""
    info = path.stat()
    h = hashlib.blake2b(digest_size=16)
    if not path.is_dir():
        h.update(f"{info.st_dev}:{info.st_ino}:{info.st_ctime_ns}:{info.st_size}:{info.st_mtime_ns}".encode())
        _head_tail(path, info.st_size, h)
        return info.st_mtime_ns, info.st_size, h.hexdigest()
    from analysis.core.cache import SHARED, shared

    return shared("directory_signature", str(path), lambda: _walk_signature(path, info, h), WALKS_KEPT,
                  ttl=WALK_TTL_S, owner=SHARED)


def _walk_signature(path: Path, info, h) -> tuple[int, int, str]:
    from trajectories.walk import walk

    newest, total, budget = info.st_mtime_ns, 0, HASH_BUDGET
    h.update(f"{info.st_ino}:{info.st_ctime_ns}".encode())
    for e in walk(path, str(path)):
        h.update(f"\0{e.rel}\0{e.kind}:{e.ino}:{e.ctime_ns}:{e.size}:{e.mtime_ns}".encode())
        if e.kind == "file":
            newest, total = max(newest, e.mtime_ns), total + e.size
            if budget > 0:
                budget -= _head_tail(e.path, e.size, h)
    return newest, total, h.hexdigest()


OPENED_KEPT = 16   # versions of local files kept open (each kind)


def open_dataset(path: str, mtime_ns: int, size: int, content: str = ""):
    """A dataset read in place, once per process per (resolved path, ui.local.signature's change key:
    mtime, size, content hash), a shared object of the one cache that every session reads; a file that is not a
    dataset gives its one sentence instead (cached too: not re-read each rerun)."""
    return shared_with_spinner("local_dataset", (path, mtime_ns, size, content), lambda: _read_dataset(path),
                               OPENED_KEPT, "Opening dataset…")


def _read_dataset(path: str):
    from analysis.core.identity import stamp_dataset
    from trajectories import DatasetError, load_dataset

    try:
        return stamp_dataset(load_dataset(path, display_name=path))
    except DatasetError as e:
        return str(e)
    except Exception as e:  # noqa: BLE001 - a reader bug must still be a sentence
        detail = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        return f"{path} could not be read ({type(e).__name__}: {detail})."


def open_agent(path: str, mtime_ns: int, size: int, content: str = ""):
    """An agent read in place, once per process per (resolved path, ui.local.signature's change key:
    mtime, size, content hash), a shared object of the one cache that every session reads and none changes; one
    that does not load gives its one sentence instead (cached too)."""
    return shared_with_spinner("local_agent", (path, mtime_ns, size, content), lambda: _read_agent(path),
                               OPENED_KEPT, "Opening agent…")


def _read_agent(path: str):
    import torch

    from analysis.core.identity import stamp_agent
    from models import load_agent
    from models.errors import AgentError

    torch.set_num_threads(1)
    try:
        return stamp_agent(load_agent(path, display_name=path).eval())
    except AgentError as e:
        return str(e)
    except Exception as e:  # noqa: BLE001 - a loader bug must still be a sentence
        detail = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        return f"{path} could not be read as an agent ({type(e).__name__}: {detail})."


def _loader(kind: str):
    return open_dataset if kind == "data" else open_agent


# Not a cache: the record of which version of each path last opened (its change key into the shared objects
# above), so a file that breaks keeps showing what opened before.
_LAST_GOOD: dict[tuple[str, str], tuple] = {}


def load(kind: str, path: Path) -> tuple[object | None, str | None]:
    """(the shared object, None), or (None, one sentence); (an older version, a note) when the file was opened
    before in this process and cannot be read now."""
    problem = check_path(path)
    sig = None
    if problem is None:
        from trajectories.errors import DatasetError

        try:
            sig = signature(path)
        except OSError as e:
            problem = f"{path} could not be read ({e.strerror or type(e).__name__})."
        except DatasetError as e:   # the walk's bounds
            problem = str(e)
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


def path_box_asked() -> bool:
    """Did the operator start the server with --local (`make app LOCAL=1`)? Never inferred from the bind address."""
    return parse_args().path_box


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
    """Home's "Open a file on this machine": only when the server was started with --local (`make app LOCAL=1`).
    Must run before the Agent and Dataset selects (it sets their state)."""
    if not path_box_asked():
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
