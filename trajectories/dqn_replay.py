"""The DT paper's Atari data: Dopamine's DQN-replay buffers (`cli.py convert --from dqn-replay DIR`), read into an
uncompressed npz of frame stacks that the Dataset layer memory-maps.

What Dopamine writes (`dopamine/replay_memory/circular_replay_buffer.py`, `OutOfGraphReplayBuffer.save`): per buffer
N, one gzipped `np.save` per array, `$store$_observation_ckpt.N.gz` (uint8 [capacity, 84, 84], one frame per slot),
`$store$_action_ckpt.N.gz` (int32 [capacity]), `$store$_reward_ckpt.N.gz` (float32), `$store$_terminal_ckpt.N.gz`
(uint8), and the public members `add_count_ckpt.N.gz` (a 0-d int: transitions ever added) and
`invalid_range_ckpt.N.gz` (the slots around the write cursor). The buffer is circular: slot `add_count % capacity`
is the next to be written, so once full the oldest slot is the cursor. Before each episode `add` writes
`stack_size - 1` all-zero padding transitions (zero frame, action 0, reward 0, terminal 0).

How kzl/decision-transformer's `atari/create_dataset.py` turns a buffer into trajectories, and where this follows it:
- the state of slot i is the stack of slots i-3..i (`get_observation_stack`, stack axis moved first: (4, 84, 84)), its
  action, reward and terminal those of slot i (update_horizon 1): followed; so an episode's first stacks hold the
  padding's zero frames, which is what the env's zero-padded FrameStackObservation gives (envs/atari.py);
- episodes end at terminal slots: followed; it takes `trajectories_per_buffer` + 1 episodes per buffer (its counter
  stops after the terminal that finds it at 0): here `trajectories_per_buffer` exactly;
- NOT followed: it walks slots from index 0, not from the cursor, so in a full buffer its first trajectory starts
  mid-episode and may run across the cursor (newest slots joined to the oldest); here slots are read oldest first
  and an episode is kept only when its start is in the buffer (after the first terminal of a full buffer);
- NOT followed: it keeps the padding slots as steps (action 0, reward 0, three per episode, counted in its
  timesteps); here they are stack sources only, never steps;
- NOT followed: its return-to-go `rtg[j] = sum(rewards[j : i + 1])` with i the index *after* the terminal step (the
  next episode's first reward is added to every step) and its timesteps give that next episode's first step the
  previous one's length; here the Dataset computes R_t = the sum of the episode's rewards from t to its end, and
  timesteps count from 0 at each episode's first step.
Buffers: kzl draws from the last `num_buffers` of 50; here the `buffers` highest suffixes present, in order.

Every file is hostile: the .npy header is read first (bounded) and its dtype and shape checked against what Dopamine
writes and against limits() (steps, mapped bytes) before anything else is decompressed; a stream is read only up to
its declared size (a gzip bomb stops there); object arrays are refused (never unpickled).
"""
from __future__ import annotations

import gzip
import json
import re
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .budget import Budget, check_mapped, check_rows
from .errors import DatasetError
from .names import jsonable
from .npz_format import META_KEY

FRAME = 84
STACK = 4
MAX_HEADER = 4096                  # a .npy header (its dict of descr, order, shape): Dopamine's are ~128 bytes
BLOCK_FRAMES = 4096                # frames decompressed per read (28 MB)
STORE = "$store$_"
ARRAYS = {  # file stem -> (dtype, shape after the capacity axis)
    f"{STORE}observation": (np.dtype(np.uint8), (FRAME, FRAME)),
    f"{STORE}action": (np.dtype(np.int32), ()),
    f"{STORE}reward": (np.dtype(np.float32), ()),
    f"{STORE}terminal": (np.dtype(np.uint8), ()),
}
SMALL = ("add_count", "invalid_range")
BROKEN = (OSError, EOFError, ValueError, zlib.error, gzip.BadGzipFile)


def file_name(stem: str, suffix: int) -> str:
    return f"{stem}_ckpt.{suffix}.gz"


def buffer_suffixes(directory: Path) -> list[int]:
    """The suffixes N of `$store$_observation_ckpt.N.gz` files in `directory`, ascending."""
    pattern = re.compile(re.escape(f"{STORE}observation_ckpt.") + r"(\d{1,9})\.gz")
    return sorted(int(m.group(1)) for p in directory.iterdir() if (m := pattern.fullmatch(p.name)))


def _open_npy(path: Path):
    """(gzip stream positioned at the data, shape, dtype) from the header alone; one sentence for anything else."""
    if not path.is_file():
        raise DatasetError(f"{path.name} is missing from {path.parent}: a Dopamine replay buffer has six files per "
                           "suffix ($store$_observation, $store$_action, $store$_reward, $store$_terminal, add_count, "
                           "invalid_range).")
    stream = gzip.open(path, "rb")
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream, max_header_size=MAX_HEADER)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream, max_header_size=MAX_HEADER)
        else:
            raise ValueError(f"unknown .npy version {version}")
    except BROKEN as e:
        stream.close()
        raise DatasetError(f"{path.name} is not a gzipped .npy array as Dopamine writes them "
                           f"({type(e).__name__}).") from None
    if dtype.hasobject:
        stream.close()
        raise DatasetError(f"{path.name} holds Python objects, which could only be read with pickle; seqlens reads "
                           "only the plain arrays Dopamine writes with np.save(allow_pickle=False).")
    if fortran and len(shape) > 1:
        stream.close()
        raise DatasetError(f"{path.name} is stored in Fortran order; Dopamine writes C order.")
    return stream, tuple(int(s) for s in shape), dtype


def _read_exact(stream, nbytes: int, path: Path) -> bytes:
    """`nbytes` from the stream (never more: a bomb's excess is never decompressed), or one sentence if short."""
    try:
        data = stream.read(nbytes)
    except BROKEN as e:
        raise DatasetError(f"{path.name} is corrupt ({type(e).__name__} while decompressing).") from None
    if len(data) != nbytes:
        raise DatasetError(f"{path.name} is truncated: its header declares {nbytes:,} bytes of data but the stream "
                           f"holds {len(data):,}.")
    return data


def _small(directory: Path, stem: str, suffix: int, max_values: int, kinds: str = "iu") -> np.ndarray:
    path = directory / file_name(stem, suffix)
    stream, shape, dtype = _open_npy(path)
    with stream:
        if dtype.kind not in kinds or int(np.prod(shape, dtype=object)) > max_values:
            raise DatasetError(f"{path.name} should hold at most {max_values} numbers, but declares {dtype} of "
                               f"shape {shape}.")
        return np.frombuffer(_read_exact(stream, int(np.prod(shape, dtype=object)) * dtype.itemsize, path), dtype)


def _columns(directory: Path, suffix: int, name: str) -> dict:
    """One buffer's add_count, capacity and its action / reward / terminal arrays, every header checked first."""
    headers = {}
    for stem, (dtype, tail) in ARRAYS.items():   # every header before any data: a bad file costs nothing
        path = directory / file_name(stem, suffix)
        stream, shape, got = _open_npy(path)
        stream.close()
        if got != dtype or len(shape) != 1 + len(tail) or shape[1:] != tail:
            want = "×".join(map(str, ("capacity", *tail)))
            raise DatasetError(f"{path.name} declares {got} of shape {shape}; Dopamine writes {dtype} of shape "
                               f"({want}) for the DT paper's 84×84 frames.")
        headers[stem] = shape
    capacity = headers[f"{STORE}observation"][0]
    if any(shape[0] != capacity for shape in headers.values()):
        raise DatasetError(f"buffer {suffix} of {name}: its arrays declare different capacities "
                           f"({', '.join(f'{k[len(STORE):]} {v[0]:,}' for k, v in headers.items())}).")
    if capacity < STACK:
        raise DatasetError(f"buffer {suffix} of {name} declares a capacity of {capacity}, below the {STACK}-frame stack.")
    check_rows(f"buffer {suffix} of {name}", capacity)
    add_count = _small(directory, "add_count", suffix, 1)
    # present and plain, as load() requires; not needed here (float64 zeros until the first add)
    _small(directory, "invalid_range", suffix, 64, kinds="iuf")
    if add_count.size != 1 or int(add_count[0]) < 0:
        raise DatasetError(f"add_count_ckpt.{suffix}.gz should hold one count of transitions added.")
    budget = Budget(f"buffer {suffix} of {name}")
    cols = {}
    for key in ("action", "reward", "terminal"):
        path = directory / file_name(f"{STORE}{key}", suffix)
        dtype = ARRAYS[f"{STORE}{key}"][0]
        budget.spend_array((capacity,), dtype.itemsize, key + "s")
        stream, _, _ = _open_npy(path)
        with stream:
            cols[key] = np.frombuffer(_read_exact(stream, capacity * dtype.itemsize, path), dtype)
    return {"capacity": capacity, "add_count": int(add_count[0]), **cols}


def episodes_in(cols: dict, trajectories: int | None) -> tuple[int, list[np.ndarray]]:
    """(oldest slot, each whole episode's positions counted from it): the slots after Dopamine's STACK-1 zero
    padding up to and including a terminal slot, at most `trajectories` episodes. Slot = (oldest + position) % capacity."""
    capacity, count = cols["capacity"], cols["add_count"]
    oldest, filled = (count % capacity, capacity) if count >= capacity else (0, count)
    terminal = np.roll(cols["terminal"], -oldest)[:filled] != 0
    out, start = [], None if count >= capacity else STACK - 1   # a full buffer's oldest episode lost its start
    for pos in np.flatnonzero(terminal):
        if start is not None and pos >= start:
            out.append(np.arange(start, pos + 1))
            if trajectories is not None and len(out) >= trajectories:
                break
        start = int(pos) + STACK   # the next episode's first slot: after its STACK - 1 padding slots
    return oldest, out


def _frames(path: Path, capacity: int, oldest: int, count: int):
    """Frames of positions 0..count-1 (slot (oldest + p) % capacity), oldest first: at most two sequential passes over
    the gzip stream (the slots from `oldest` to the end, then from 0), BLOCK_FRAMES at a time."""
    frame_bytes = FRAME * FRAME
    segments = [(oldest, min(capacity, oldest + count))]
    if oldest + count > capacity:
        segments.append((0, oldest + count - capacity))
    for lo, hi in segments:
        stream, _, _ = _open_npy(path)
        with stream:
            for skip in range(0, lo, BLOCK_FRAMES):   # decompressed and dropped: gzip cannot seek
                _read_exact(stream, (min(lo, skip + BLOCK_FRAMES) - skip) * frame_bytes, path)
            for a in range(lo, hi, BLOCK_FRAMES):
                b = min(hi, a + BLOCK_FRAMES)
                yield from np.frombuffer(_read_exact(stream, (b - a) * frame_bytes, path), np.uint8).reshape(
                    b - a, FRAME, FRAME)


def _write_stacks(out, obs_path: Path, capacity: int, oldest: int, positions: np.ndarray) -> None:
    """The stack of positions p-3..p for each p in `positions` (ascending, each >= STACK - 1), written to `out` in
    that order while the frames stream past once."""
    if not len(positions):
        return
    ring = np.zeros((STACK, FRAME, FRAME), np.uint8)
    wanted = iter(positions.tolist())
    nxt = next(wanted)
    for p, frame in enumerate(_frames(obs_path, capacity, oldest, int(positions[-1]) + 1)):
        ring[:-1] = ring[1:]
        ring[-1] = frame
        if p == nxt:
            out.write(ring.tobytes())
            nxt = next(wanted, None)
            if nxt is None:
                break


def convert_dqn_replay(directory, out, buffers: int = 1, trajectories_per_buffer: int | None = None,
                       env_id: str | None = None, n_actions: int | None = None) -> dict:
    """Read the `buffers` highest-numbered buffers in `directory` and write `out` (.npz): frame stacks uint8
    [N, 4, 84, 84] stored uncompressed (the reader maps them), actions, rewards, terminated, truncated,
    episode_starts and seqlens' meta (env_id, n_actions). Returns a summary (episodes, steps, buffers read)."""
    directory, out = Path(directory), Path(out)
    name = directory.name or str(directory)
    if not directory.is_dir():
        raise DatasetError(f"{directory} is not a directory of Dopamine replay files (…/<Game>/<run>/replay_logs).")
    if int(buffers) < 1:
        raise DatasetError(f"--buffers must be at least 1, got {buffers}.")
    if trajectories_per_buffer is not None and int(trajectories_per_buffer) < 1:
        raise DatasetError(f"--trajectories-per-buffer must be at least 1, got {trajectories_per_buffer}.")
    found = buffer_suffixes(directory)
    if not found:
        raise DatasetError(f"{directory} holds no {STORE}observation_ckpt.N.gz file: not a Dopamine replay directory.")
    if len(found) < buffers:
        raise DatasetError(f"{directory} holds {len(found)} buffer(s) ({', '.join(map(str, found))}); "
                           f"{buffers} were asked for.")
    chosen = found[-int(buffers):]
    parts = []
    for suffix in chosen:
        cols = _columns(directory, suffix, name)
        oldest, eps = episodes_in(cols, trajectories_per_buffer)
        positions = np.concatenate(eps) if eps else np.zeros(0, np.int64)
        parts.append((suffix, cols, eps, positions, (oldest + positions) % cols["capacity"], oldest))
    n = sum(len(p[3]) for p in parts)
    if n == 0:
        raise DatasetError(f"{directory}: the buffers read ({', '.join(map(str, chosen))}) hold no whole episode "
                           "(no terminal after an episode's start).")
    check_rows(name, n)
    check_mapped(name, (n, STACK, FRAME, FRAME), 1, "4×84×84 frame stacks")
    actions = np.concatenate([p[1]["action"][p[4]] for p in parts]).astype(np.int64)
    if actions.min() < 0 or (n_actions is not None and actions.max() >= n_actions):
        raise DatasetError(f"{directory}: actions run {actions.min()}..{actions.max()}, but the game has "
                           f"{n_actions} actions (0..{(n_actions or 1) - 1}).")
    rewards = np.concatenate([p[1]["reward"][p[4]] for p in parts]).astype(np.float32)
    if not np.isfinite(rewards).all():
        raise DatasetError(f"{directory}: rewards hold NaN or infinite values.")
    lengths = [len(e) for p in parts for e in p[2]]
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    terminated = np.zeros(n, bool)
    terminated[np.cumsum(lengths) - 1] = True
    meta = {"obs_names": [], "act_names": ["action"], "n_actions": n_actions, "env_id": env_id,
            "metadata": {"source_format": "dqn-replay", "buffers": chosen,
                         "trajectories_per_buffer": trajectories_per_buffer,
                         "episodes_per_buffer": [len(p[2]) for p in parts]}}
    small = {"actions": actions, "rewards": rewards, "terminated": terminated, "truncated": np.zeros(n, bool),
             "episode_starts": starts, META_KEY: np.array(json.dumps(meta, default=jsonable))}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    try:
        with open(tmp, "wb") as f, zipfile.ZipFile(f, "w", allowZip64=True) as zf:
            info = zipfile.ZipInfo("observations.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED   # mapped in place by the reader
            with zf.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array_header_2_0(member, {"descr": "|u1", "fortran_order": False,
                                                              "shape": (n, STACK, FRAME, FRAME)})
                for suffix, cols, _, positions, _, oldest in parts:
                    _write_stacks(member, directory / file_name(f"{STORE}observation", suffix), cols["capacity"],
                                  oldest, positions)
            for key, arr in small.items():
                info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                with zf.open(info, "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, arr, allow_pickle=False)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return {"buffers": chosen, "n_episodes": len(lengths), "n_transitions": n}
