"""Frames of an episode (issue 16): rendered by the environment, or rebuilt from logged data.

Two sources, both `render_mode="rgb_array"`:
- **logged data** (`from_data`): the environment is put into each logged state and rendered, where the
  observation determines what is drawn: CartPole (the observation is the full state), masked CartPole (the
  renderer reads only the cart position and pole angle, which the observation keeps), Pendulum and masked
  Pendulum (the angle from cos/sin; the torque arrow from the previous logged action, as `env.render()` shows it
  after that step), Key-to-Door (the observation, plus whether the key was taken, which the key room's observations
  and last move tell), Reacher (joint angles from cos/sin, the target, the joint velocities) and any MuJoCo task given its
  `qpos`/`qvel` (`set_state`; passed in, else the dataset's `infos`, e.g. D4RL's `infos/qpos`, `infos/qvel`);
- **the environment** (`replay`): the episode's actions replayed from its reset seed, each state rendered.
Otherwise `frames` is None and `why` is one sentence saying why; the page draws a state-line plot instead.

Bounded: at most `max_frames` frames (default 2,000; `SEQLENS_MAX_FRAMES`) — a longer episode is drawn at evenly
spaced steps from data, or its first `max_frames` steps when replayed (stepping a huge episode costs as much as
rendering it) — and at most `max_bytes` of frames (512 MiB; `SEQLENS_MAX_FRAME_BYTES`), beyond which frames are
downscaled. Both are checked before anything is rendered and said in `note`.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass

import numpy as np

MAX_FRAMES = 2_000
MAX_FRAME_BYTES = 512 << 20
_ENV_LIMITS = {"max_frames": ("SEQLENS_MAX_FRAMES", MAX_FRAMES), "max_bytes": ("SEQLENS_MAX_FRAME_BYTES", MAX_FRAME_BYTES)}

# environments whose observation determines the frame, by how it is rebuilt (others: qpos/qvel, replay or none)
FAMILIES = {
    "CartPole-v1": "cartpole",
    "seqlens/MaskedCartPole-v1": "masked_cartpole",
    "Pendulum-v1": "pendulum",
    "seqlens/MaskedPendulum-v1": "masked_pendulum",
    "seqlens/KeyToDoor-v0": "keydoor",
    "Reacher-v5": "reacher",
}
OBS_DIMS = {"cartpole": 4, "masked_cartpole": 2, "pendulum": 3, "masked_pendulum": 2, "keydoor": 9, "reacher": 10}
MUJOCO_SIZE = 480   # MuJoCo renders at the size asked for (no downscaling); gymnasium's default


class FramesError(ValueError):
    """An argument the frames cannot be made with (a bad width, an episode out of range); str() is one sentence."""


@dataclass
class Frames:
    """frames [n, H, W, 3] uint8 (None: no frame can be drawn), the episode step each shows, and sentences."""

    frames: np.ndarray | None
    steps: np.ndarray            # [n] step within the episode of each frame
    why: str                     # how the frames were made, or why there are none (one sentence)
    note: str | None = None      # what the bounds changed (subsampled steps, downscaled frames), else None
    source: str | None = None    # "data", "environment" or None
    env_id: str | None = None
    length: int = 0              # the episode's steps (frames may show fewer)
    fps: float = 30.0            # the environment's render_fps (real time)
    reason: str | None = None    # no frames: why, as a clause (why = the page's sentence around it)

    @property
    def ok(self) -> bool:
        return self.frames is not None


def limit(name: str, value=None) -> int:
    """A bound in force: `value` if given, else its SEQLENS_* variable (a positive number), else the default."""
    if value is not None:
        value = int(value)
        if value < 1:
            raise FramesError(f"{name} must be a positive number, got {value}.")
        return value
    var, default = _ENV_LIMITS[name]
    try:
        got = int(float(os.environ.get(var, "")))
    except ValueError:
        return default   # unset or malformed: the default rather than no bound
    return got if got > 0 else default


def plan_steps(length: int, max_frames: int | None = None, how: str = "even") -> tuple[np.ndarray, str | None]:
    """The episode steps to draw: all of them up to max_frames, else max_frames evenly spaced ones ("even") or the
    first max_frames ("first"), with the sentence that says so. Nothing is rendered or allocated per step here."""
    n = limit("max_frames", max_frames)
    if length <= n:
        return np.arange(length), None
    if how == "first":
        return np.arange(n), (f"The episode has {length:,} steps, more than the {n:,} frames drawn at most, "
                              f"so its first {n:,} steps are shown.")
    steps = np.unique(np.linspace(0, length - 1, n).round().astype(np.int64))
    return steps, (f"The episode has {length:,} steps, more than the {n:,} frames drawn at most, so {len(steps):,} "
                   f"evenly spaced steps (about one in {length / len(steps):.3g}) are shown.")


def output_size(native: tuple[int, int], n: int, width: int | None = None, height: int | None = None,
                max_bytes: int | None = None) -> tuple[tuple[int, int], str | None]:
    """(W, H) of n frames rendered at native (W, H): the width/height asked for (the other side keeps the aspect),
    shrunk to fit max_bytes, and the sentence when it was shrunk."""
    W0, H0 = native
    if width is not None and int(width) < 8 or height is not None and int(height) < 8:
        raise FramesError(f"frame width and height must be at least 8 pixels, got {width} x {height}.")
    if width is None and height is None:
        W, H = W0, H0
    elif height is None:
        W, H = int(width), max(1, round(H0 * int(width) / W0))
    elif width is None:
        W, H = max(1, round(W0 * int(height) / H0)), int(height)
    else:
        W, H = int(width), int(height)
    cap = limit("max_bytes", max_bytes)
    if n * W * H * 3 <= cap:
        return (W, H), None
    f = math.sqrt(cap / (n * W * H * 3))
    W2, H2 = max(8, int(W * f)), max(8, int(H * f))
    return (W2, H2), (f"{n:,} frames of {W} x {H} would take {n * W * H * 3 / 2**20:,.0f} MiB, over the "
                      f"{cap / 2**20:,.0f} MiB bound, so they are drawn at {W2} x {H2}.")


def _resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """PIL resize to (W, H): nearest for whole-number enlargements (Key-to-Door's cells stay sharp), else a box
    filter (an average over each output pixel's area: clean lines when shrinking)."""
    H0, W0 = img.shape[:2]
    if (W0, H0) == size:
        return img
    from PIL import Image

    W, H = size
    whole = W % W0 == 0 and H % H0 == 0 and W // W0 == H // H0
    res = Image.Resampling.NEAREST if whole else (Image.Resampling.BOX if W <= W0 else Image.Resampling.BICUBIC)
    return np.asarray(Image.fromarray(img).resize(size, res))


# ---- making a rendering environment -----------------------------------------------------------------
def is_mujoco(env_id: str) -> bool:
    import gymnasium as gym

    import envs

    try:
        entry = gym.spec(envs.check_env_id(env_id)).entry_point
    except Exception:  # noqa: BLE001 - refused or unknown ids are handled where the env is made
        return False
    return isinstance(entry, str) and entry.startswith("gymnasium.envs.mujoco")


def _brief(err: BaseException) -> str:
    """An exception as a clause: its type and the first clause of its message (so a sentence stays one)."""
    text = str(err).splitlines()[0] if str(err) else ""
    text = text.split(". ")[0].rstrip(".")[:120]
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _gl_reason(env_id: str, err: BaseException) -> str:
    backend = os.environ.get("MUJOCO_GL", "egl")
    return (f"MuJoCo's headless renderer (MUJOCO_GL={backend}) could not start for {env_id} ({_brief(err)}), so the GL "
            "library is missing or unusable (install Debian's libegl1, or libosmesa6 with MUJOCO_GL=osmesa)")


def make_render_env(env_id: str, size: tuple[int, int] | None = None, agent=None):
    """(env reset once, None) ready to render, or (None, the reason it cannot render here: a clause, no full stop).
    A MiniGrid task is made as `agent` sees it (models/rollout.make_agent_env: DTI's wrappers, the image)."""
    import envs
    from models.rollout import is_grid_env, make_agent_env

    mujoco = is_mujoco(env_id)
    kwargs = {}
    if mujoco:
        os.environ.setdefault("MUJOCO_GL", "egl")   # headless; MuJoCo's default (GLFW) needs a display
        w, h = size or (MUJOCO_SIZE, MUJOCO_SIZE)
        kwargs = {"width": int(w), "height": int(h)}
    else:
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")   # pygame draws offscreen; no display, no warning
    try:
        with warnings.catch_warnings():   # gymnasium warns of a render mode the env lacks; the sentence below says it
            warnings.filterwarnings("ignore", message=".*not in the possible render_modes")
            if is_grid_env(envs.check_env_id(env_id)):
                env = make_agent_env(env_id, agent, render_mode="rgb_array")
            else:
                env = envs.make(env_id, render_mode="rgb_array", **kwargs)
    except envs.EnvIdError as e:
        return None, str(e).rstrip(".")
    except Exception as e:  # noqa: BLE001 - a missing dependency (mujoco, pygame), GL library, or rgb_array mode
        import gymnasium as gym

        if mujoco and isinstance(e, (ImportError, gym.error.DependencyNotInstalled)):
            return None, f"{env_id} needs MuJoCo, which is not installed here (pip install 'gymnasium[mujoco]')"
        if mujoco:    # MuJoCo builds its offscreen GL context when the env is made
            return None, _gl_reason(env_id, e)
        return None, f"{env_id} cannot be made with render_mode='rgb_array' here ({_brief(e)})"
    if "rgb_array" not in (env.metadata.get("render_modes") or []):
        env.close()
        return None, f"{env_id} does not render to images (its render modes are {env.metadata.get('render_modes')})"
    try:
        env.reset(seed=0)   # gymnasium refuses render() before a first reset
        # MuJoCo's renderer aims its camera at the bodies where they are at its first render (the median of
        # geom_xpos), so it must first render the episode's own first state: no trial render here
        probe = env.render() if not mujoco else np.zeros((1, 1, 3), np.uint8)
    except Exception as e:  # noqa: BLE001 - a missing GL library shows up at the first render
        env.close()
        return None, _gl_reason(env_id, e) if mujoco else f"{env_id} failed to render ({_brief(e)})"
    if not isinstance(probe, np.ndarray) or probe.ndim != 3 or probe.shape[2] != 3:
        env.close()
        return None, f"{env_id} rendered {type(probe).__name__}, not an RGB image"
    return env, None


# ---- putting an environment into a logged state ---------------------------------------------------------
def _keydoor_has_key(obs: np.ndarray, actions: np.ndarray, grid: int) -> np.ndarray | str:
    """[T] whether the key is held at each step of a Key-to-Door episode, or a sentence when the logged steps do
    not tell. The observation hides the key once taken, and after the key room hides it anyway: the key room tells
    (the key vanished, or the room's last move stepped onto it, a pickup the next observation cannot show)."""
    from envs.key_to_door import ABSENT, MOVES

    phase = obs[:, 2:5].argmax(1)
    if phase[0] != 0:
        return ("the episode starts after the key room, so whether the key was taken (drawn as a gold dot, never "
                "observed after the key room) is not in the data")
    key_seen = obs[:, 5] != ABSENT
    held = (phase == 0) & ~key_seen
    in_room = np.flatnonzero(phase == 0)
    last = int(in_room[-1])
    taken = bool(held[last])
    if not taken and last + 1 < len(obs):       # did the room's last move step onto the key?
        nxt = np.clip(obs[last, :2] + MOVES[int(actions[last])], 0, grid - 1)
        taken = bool((nxt == obs[last, 5:7]).all())
    held[last + 1:] = taken
    return held


def _setter(family: str, obs: np.ndarray, actions: np.ndarray, env, qpos=None, qvel=None):
    """fn(t) putting env into the state logged at step t, or a sentence when the data cannot."""
    u = env.unwrapped
    if family in ("cartpole", "masked_cartpole"):
        def cartpole(t):
            o = obs[t].astype(np.float64)
            # masked CartPole keeps x and theta: all CartPole's render reads (velocities are not drawn)
            u.state = o if family == "cartpole" else np.array([o[0], 0.0, o[1], 0.0])
        return cartpole
    if family in ("pendulum", "masked_pendulum"):
        cont = np.asarray(actions, np.float64).reshape(len(actions), -1)[:, 0]
        hi = float(u.max_torque)

        def pendulum(t):
            o = obs[t].astype(np.float64)
            thdot = o[2] if family == "pendulum" else 0.0   # the angular velocity is not drawn
            u.state = np.array([math.atan2(o[1], o[0]), thdot])
            # env.render() after step(a) draws a's (clipped) torque; after reset, none
            u.last_u = None if t == 0 else np.float64(np.clip(cont[t - 1], -hi, hi))
        return pendulum
    if family == "keydoor":
        from envs.key_to_door import ABSENT

        grid = int(u.size)

        def cells(a):   # whole-number cells inside the room
            return (a >= 0) & (a < grid) & (a == np.round(a))

        phase = obs[:, 2:5].argmax(1)
        ok = (np.isin(obs[:, 2:5], (0.0, 1.0)).all() and (obs[:, 2:5].sum(1) == 1).all() and cells(obs[:, :2]).all()
              and (cells(obs[:, 5:7]).all(1) | (obs[:, 5:7] == ABSENT).all(1)).all()
              and cells(obs[phase == 2, 7:9]).all())    # the door is shown throughout the door room
        if not ok:
            return (f"its observations are not Key-to-Door's (agent, key and door cells within the {grid} x {grid} "
                    "room, one phase flag on), so they cannot be drawn as its rooms")
        held = _keydoor_has_key(obs, actions, grid)
        if isinstance(held, str):
            return held

        def keydoor(t):
            o = obs[t]
            u.agent = o[:2].astype(np.int64)
            u.phase = int(o[2:5].argmax())
            u.has_key = bool(held[t])
            # key and door are drawn only where the observation shows them
            u.key = o[5:7].astype(np.int64) if o[5] != ABSENT else np.array([-9, -9])
            u.door = o[7:9].astype(np.int64) if o[7] != ABSENT else np.array([-9, -9])
        return keydoor
    if family == "reacher":
        def reacher(t):
            o = obs[t].astype(np.float64)
            qp = np.array([math.atan2(o[2], o[0]), math.atan2(o[3], o[1]), o[4], o[5]])
            u.set_state(qp, np.array([o[6], o[7], 0.0, 0.0]))   # the target does not move
        return reacher
    if family == "qpos":
        nq, nv = int(u.model.nq), int(u.model.nv)
        widths = (np.shape(qpos)[1:], np.shape(qvel)[1:])
        if widths != ((nq,), (nv,)):
            shown = " and ".join(f"{w[0] if len(w) == 1 else w} {k}" for w, k in zip(widths, ("qpos", "qvel")))
            return (f"its states have {shown} values per step but {env.spec.id}'s model has {nq} and {nv}, so they "
                    f"are not {env.spec.id} states")
        if not (np.isfinite(qpos).all() and np.isfinite(qvel).all()):
            return "its qpos or qvel has NaN or inf, which MuJoCo cannot draw"

        def mujoco(t):
            u.set_state(np.asarray(qpos[t], np.float64), np.asarray(qvel[t], np.float64))
        return mujoco
    raise AssertionError(family)


def _family(env_id: str, obs_dim: int, qpos, qvel) -> tuple[str | None, str | None]:
    """(family, None) or (None, the sentence saying why the data does not determine a frame)."""
    if qpos is not None and qvel is not None and is_mujoco(env_id):
        return "qpos", None
    fam = FAMILIES.get(env_id)
    if fam is None:
        if is_mujoco(env_id):
            return None, (f"{env_id}'s observation does not hold the whole MuJoCo state (positions such as the body's x "
                          "are left out), and this dataset carries no infos/qpos and infos/qvel (of the formats seqlens "
                          "reads, only D4RL-style HDF5 keeps them), so its frames cannot be rebuilt")
        return None, f"seqlens does not know how to draw a state of {env_id} from its observation"
    if obs_dim != OBS_DIMS[fam]:
        return None, (f"its observations have {obs_dim} features but {env_id}'s have {OBS_DIMS[fam]}, so they are not "
                      f"{env_id} states")
    return fam, None


def _fast_mujoco(env) -> None:
    """No shadows or reflections: 5x faster on a software GL (Hopper at 288 px: 64 -> 13 ms a frame). Called once
    the env is in its first state: making the viewer aims its camera there, as a first render would."""
    import mujoco

    viewer = env.unwrapped.mujoco_renderer._get_viewer("rgb_array")   # gymnasium makes it on the first render
    viewer.scn.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
    viewer.scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0


def _draw(env, set_state, steps, size, each=None, fast=False):
    """[n, H, W, 3]: the env put into each step's state and rendered, resized as it goes (never all native); with
    `each`, the list of each(frame) instead (no frame kept). fast: a MuJoCo env drawn without shadows and
    reflections."""
    out = None
    for i, t in enumerate(steps):
        set_state(int(t))
        if fast and i == 0:
            _fast_mujoco(env)
        img = _resize(np.asarray(env.render()), size)
        if each is not None:
            out = [] if out is None else out
            out.append(each(img))
            continue
        if out is None:
            out = np.empty((len(steps), *img.shape), np.uint8)
        out[i] = img
    return out


def from_data(dataset, episode: int = 0, *, env_id: str | None = None, start: int = 0, stop: int | None = None,
              max_frames: int | None = None, width: int | None = None, height: int | None = None,
              max_bytes: int | None = None, qpos=None, qvel=None, each=None, fast: bool = False) -> Frames:
    """Frames of episode `episode`, steps [start, stop), rebuilt from the logged observations (and, for MuJoCo, qpos
    and qvel [T, nq], [T, nv] of the episode's steps when given, else the dataset's `infos` "qpos" and "qvel").
    env_id: the environment to draw (default the dataset's). Frames(None, why) when the data cannot be drawn; its
    steps are still the ones that would have been drawn. each: a function of one frame [H, W, 3]; `frames` is then
    the list of its results, and no frame is kept (the player encodes 500 frames without holding 360 MB of them).
    fast: MuJoCo frames without shadows and reflections (the player's preview; exports keep the full render)."""
    if not -dataset.n_episodes <= int(episode) < dataset.n_episodes:
        raise FramesError(f"episode {episode} is out of range: the dataset has {dataset.n_episodes} episodes "
                          f"(0 to {dataset.n_episodes - 1}).")
    e = int(episode) % dataset.n_episodes
    lo_i, hi_i = int(dataset.episode_starts[e]), int(dataset.episode_ends[e])
    obs, actions = dataset.observations[lo_i:hi_i], dataset.actions[lo_i:hi_i]   # views (Dataset.episode would
    T = hi_i - lo_i                                                               # compute returns-to-go first)
    lo, hi = _window(T, start, stop)
    rel, note = plan_steps(hi - lo, max_frames, "even")
    steps = rel + lo     # planned first: a failure says which steps it could not draw (callers align on them)
    env_id = env_id or dataset.env_id
    if not env_id and not getattr(dataset, "shaped", False):
        return _none(steps, dataset.source, "it names no environment to draw its observations with", None, T)
    infos = getattr(dataset, "infos", None) or {}
    if qpos is None and qvel is None and "qpos" in infos and "qvel" in infos:
        qpos, qvel = infos["qpos"][lo_i:hi_i], infos["qvel"][lo_i:hi_i]
    if (qpos is None) != (qvel is None) or qpos is not None and (len(qpos) != T or len(qvel) != T):
        raise FramesError(f"qpos and qvel must both be given, one row per step of the episode ({T} steps).")
    if getattr(dataset, "shaped", False):   # grids / frame stacks: the agent's own view (analysis/media/agent_view.py)
        from analysis.media import agent_view

        if agent_view.obs_kind(dataset.obs_shape) is None:
            return _none(steps, dataset.source, f"seqlens draws MiniGrid views and Atari frame stacks, not "
                         f"{dataset.obs_shape_text} {dataset.obs_kind}", env_id, T)
        fit = None
        if width is not None:   # a video's width: the view and the render scaled together (even sides for MP4)
            def fit(img):
                W = int(width) // 2 * 2
                return _resize(img, (W, max(2, round(img.shape[0] * W / img.shape[1] / 2) * 2)))
        drawn, why, fps = agent_view.episode_frames(obs, actions, steps, env_id, dataset.metadata.get("reset_seed"),
                                                    height, each, fit)
        return Frames(drawn if each is not None else np.stack(drawn), steps, why, note, "data", env_id, T, fps)
    fam, why = _family(env_id, dataset.obs_dim, qpos, qvel)
    if fam is None:
        return _none(steps, dataset.source, why, env_id, T)
    mujoco = fam in ("reacher", "qpos")
    native = (MUJOCO_SIZE, MUJOCO_SIZE) if mujoco else _native_size(env_id)
    size, shrink = output_size(native, len(steps), width, height, max_bytes)
    env, why = make_render_env(env_id, size if mujoco else None)
    if env is None:
        return _none(steps, dataset.source, why, env_id, T)
    try:
        set_state = _setter(fam, obs, actions, env, qpos, qvel)
        if isinstance(set_state, str):
            return _none(steps, dataset.source, set_state, env_id, T)
        try:
            frames = _draw(env, set_state, steps, size, each, fast and mujoco)
        except Exception as e:  # noqa: BLE001 - MuJoCo meets a missing GL library at its first render
            if not mujoco:
                raise
            return _none(steps, dataset.source, _gl_reason(env_id, e), env_id, T)
        fps = float(env.metadata.get("render_fps") or 30)
    finally:
        env.close()
    how = {"masked_cartpole": " (cart position and pole angle: all the renderer reads)",
           "masked_pendulum": " (the angle; the torque arrow from the logged actions)",
           "pendulum": " (the torque arrow from the logged actions)",
           "keydoor": " (the key's pickup from the key room's steps)",
           "qpos": " (qpos and qvel through set_state)"}.get(fam, "")
    return Frames(frames, steps, f"Drawn by {env_id} from the logged observations{how}.",
                  _join(note, shrink), "data", env_id, T, fps)


def replay(env_id: str, actions, seed: int, *, observations=None, max_frames: int | None = None,
           width: int | None = None, height: int | None = None, max_bytes: int | None = None,
           atol: float = 1e-5) -> Frames:
    """Frames of an episode rendered by the environment itself: reset(seed), then the logged actions stepped one by
    one, each state rendered (frame t = the state the t-th action answered). The first max_frames steps only. Given
    `observations`, the replay must reproduce them (within atol), else no frames and a sentence."""
    actions = np.asarray(actions)
    T = len(actions)
    steps, note = plan_steps(T, max_frames, "first")
    mujoco = is_mujoco(env_id)
    native = (MUJOCO_SIZE, MUJOCO_SIZE) if mujoco else _native_size(env_id)
    size, shrink = output_size(native, len(steps), width, height, max_bytes)
    env, why = make_render_env(env_id, size if mujoco else None)
    if env is None:
        return _none(steps, "the episode", why, env_id, T)
    try:
        obs, _ = env.reset(seed=int(seed))
        out = None
        for i in range(len(steps)):
            if observations is not None and not np.allclose(np.asarray(obs, np.float64).ravel(),
                                                            np.asarray(observations[i], np.float64).ravel(), atol=atol):
                return _none(steps, "the episode", f"replaying its actions in {env_id} from reset seed {seed} did "
                             f"not reproduce its observation at step {i}", env_id, T)
            img = _resize(np.asarray(env.render()), size)
            if out is None:
                out = np.empty((len(steps), *img.shape), np.uint8)
            out[i] = img
            if i + 1 < len(steps):
                obs, *_ = env.step(actions[i] if actions.ndim > 1 else actions[i].item())
        fps = float(env.metadata.get("render_fps") or 30)
    except Exception as e:  # noqa: BLE001 - a GL failure mid-episode is still a sentence
        why = _gl_reason(env_id, e) if mujoco else f"{env_id} failed while replaying it ({_brief(e)})"
        return _none(steps, "the episode", why, env_id, T)
    finally:
        env.close()
    return Frames(out, steps, f"Rendered by {env_id}, replaying the episode's actions from reset seed {seed}.",
                  _join(note, shrink), "environment", env_id, T, fps)


def _none(steps, what: str, reason: str, env_id, T: int) -> Frames:
    """No frames: `reason` (a clause) kept for callers with their own wording, `why` the page's sentence."""
    return Frames(None, steps, f"No frames for {what}: {reason}; a state-line plot stands in.", env_id=env_id,
                  length=T, reason=reason)


_NATIVE: dict[str, tuple[int, int]] = {}


def _native_size(env_id: str) -> tuple[int, int]:
    """(W, H) the environment renders at (classic control and Key-to-Door: fixed; read once per process)."""
    if env_id not in _NATIVE:
        known = {"cartpole": (600, 400), "masked_cartpole": (600, 400), "pendulum": (500, 500),
                 "masked_pendulum": (500, 500), "keydoor": (80, 96)}
        fam = FAMILIES.get(env_id)
        if fam in known:
            _NATIVE[env_id] = known[fam]
        else:
            env, _ = make_render_env(env_id)
            if env is None:
                return (MUJOCO_SIZE, MUJOCO_SIZE)   # make_render_env will say why when it is asked again
            H, W = env.render().shape[:2]
            env.close()
            _NATIVE[env_id] = (W, H)
    return _NATIVE[env_id]


def _window(T: int, start, stop) -> tuple[int, int]:
    """[lo, hi) inside an episode of T steps; a stop past the end ends at the end."""
    lo = int(start or 0)
    hi = T if stop is None else min(int(stop), T)
    if not 0 <= lo < T or hi <= lo:
        raise FramesError(f"steps {lo} to {hi} are not a stretch of the episode's {T} steps (start 0 to {T - 1}, "
                          "stop after start).")
    return lo, hi


def _join(*notes) -> str | None:
    kept = [n for n in notes if n]
    return " ".join(kept) if kept else None
