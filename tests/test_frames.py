"""analysis/media/frames.py: frames rebuilt from logged data equal the environment's own rendering of that state; data that
cannot be drawn gets one sentence; huge episodes are bounded before anything is rendered."""
import ctypes.util
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import envs
from analysis.media import frames as F
from trajectories import Dataset

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")


def _run(env_id, policy, steps, seed=3, probe=None):
    """Play one episode; return (dataset of it, the env's own render() at every step it acted on), and with probe,
    probe(env) at every step too."""
    env = envs.make(env_id, render_mode="rgb_array")
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    O, A, R, truth, probed = [], [], [], [], []
    for t in range(steps):
        truth.append(env.render())
        probed.append(probe(env) if probe else None)
        a = policy(env, obs, t, rng)
        O.append(obs)
        A.append(a)
        obs, r, term, trunc, _ = env.step(a)
        R.append(r)
        if term or trunc:
            break
    env.close()
    n = len(O)
    flags = np.zeros(n, bool)
    acts = np.array(A) if np.ndim(A[0]) == 0 else np.stack(A).astype(np.float32)
    ds = Dataset(np.stack(O), acts, np.array(R, np.float32), flags, flags, np.array([0]), env_id=env_id, source=env_id)
    return (ds, np.stack(truth), probed) if probe else (ds, np.stack(truth))


def _random_discrete(env, obs, t, rng):
    th, thdot = env.unwrapped.state[2:]     # the full state (masked CartPole too): a pole that stays up a while
    return int(th + 0.3 * thdot > 0) if rng.random() < 0.7 else int(rng.integers(2))


def _random_torque(env, obs, t, rng):
    return rng.uniform(-2.5, 2.5, size=1).astype(np.float32)   # past the +-2 bound: the arrow shows the clipped torque


@pytest.mark.parametrize("env_id, policy, steps", [
    ("CartPole-v1", _random_discrete, 40),
    ("seqlens/MaskedCartPole-v1", _random_discrete, 40),
    ("Pendulum-v1", _random_torque, 40),
    ("seqlens/MaskedPendulum-v1", _random_torque, 40),
])
def test_classic_control_frames_from_data_equal_env_render(env_id, policy, steps):
    ds, truth = _run(env_id, policy, steps)
    fr = F.from_data(ds, 0)
    assert fr.ok and fr.source == "data" and fr.note is None, fr.why
    assert fr.frames.shape == truth.shape and fr.frames.dtype == np.uint8
    # bit-exact (measured: 0 differing pixels over 200 steps each): the float32 observation rounds to the same pixels
    assert np.array_equal(fr.frames, truth)
    assert fr.fps == (50 if "CartPole" in env_id else 30)      # the environment's own render_fps
    # and it is the state that counts: another step's frame differs
    assert len(truth) >= 10 and not np.array_equal(fr.frames[0], truth[-1])


class _KeyDoorPolicy:
    """Walk to the key, then to the door (random steps in the distractor room). pickup_last: waste moves (away and
    back) so that, where the key's distance allows, the key is taken by the key room's 7th and last move."""

    def __init__(self, pickup_last: bool):
        self.pickup_last, self.wasted = pickup_last, False

    @staticmethod
    def _towards(agent, goal):
        d = np.asarray(goal) - agent
        if d[0]:
            return 0 if d[0] < 0 else 1
        return 2 if d[1] < 0 else 3

    def __call__(self, env, obs, t, rng):
        u = env.unwrapped
        if u.phase == 0 and not u.has_key:
            first = self._towards(u.agent, u.key)
            spare = (u.phase_steps[0] - u.phase_t) - int(np.abs(u.key - u.agent).sum())
            if self.pickup_last and spare > 0 and spare % 2 == 0 and not self.wasted:
                self.wasted = True
                return {0: 1, 1: 0, 2: 3, 3: 2}[first]     # one step away (never into a wall: it alternates)
            self.wasted = False
            return first
        if u.phase == 2:
            return self._towards(u.agent, u.door)
        return int(rng.integers(4))


@pytest.mark.parametrize("seed, pickup_last", [(0, False), (2, False), (1, True), (5, True)])
def test_keydoor_frames_from_data_equal_env_render(seed, pickup_last):
    ds, truth, has_key = _run("seqlens/KeyToDoor-v0", _KeyDoorPolicy(pickup_last), 25, seed=seed,
                              probe=lambda env: env.unwrapped.has_key)
    fr = F.from_data(ds, 0)
    assert fr.ok, fr.why
    assert np.array_equal(fr.frames, truth)
    # whether the key is held (its gold dot), never observed after the key room, is read from the key room's steps
    assert F._keydoor_has_key(ds.observations, ds.actions, 5).tolist() == has_key
    assert any(has_key)


def test_each_frame_is_handed_over_as_it_is_drawn_and_none_is_kept():
    ds, truth = _run("CartPole-v1", _random_discrete, 12)
    seen = []
    fr = F.from_data(ds, 0, each=lambda f: seen.append(f.copy()) or int(f.sum()))
    assert fr.frames == [int(t.sum()) for t in truth] and np.array_equal(np.stack(seen), truth)


def test_keydoor_pickup_on_the_key_rooms_last_move_is_inferred():
    """The key taken by the key room's 7th move: the next observation is the distractor room's (no key shown
    either way), so only that last move onto the key tells; the frames must still show the gold dot."""
    found = 0
    for seed in range(12):
        ds, truth, has_key = _run("seqlens/KeyToDoor-v0", _KeyDoorPolicy(True), 25, seed=seed,
                                  probe=lambda env: env.unwrapped.has_key)
        key_room = ds.observations[:, 2] == 1
        if (ds.observations[key_room, 5] != -1).all() and has_key[7]:   # shown all through the room, then held
            found += 1
            assert F._keydoor_has_key(ds.observations, ds.actions, 5).tolist() == has_key
            assert np.array_equal(F.from_data(ds, 0).frames, truth)
    assert found >= 2


def test_masked_cartpole_frame_needs_only_position_and_angle():
    """The renderer reads x and theta only, so a full CartPole state with any velocities draws the same frame."""
    env = envs.make("CartPole-v1", render_mode="rgb_array")
    env.reset(seed=0)
    env.unwrapped.state = np.array([0.3, 1.7, -0.05, -2.0])
    a = env.render()
    env.unwrapped.state = np.array([0.3, -4.0, -0.05, 3.0])
    assert np.array_equal(a, env.render())
    env.close()


def _gl_ok():
    env, why = F.make_render_env("Reacher-v5", (64, 64))
    if env is None:
        return why
    env.close()
    return None


def test_reacher_frames_from_observations_and_from_qpos_equal_set_state_render():
    why = _gl_ok()
    if why:
        pytest.skip(why)
    env = envs.make("Reacher-v5", render_mode="rgb_array", width=96, height=96)
    obs, _ = env.reset(seed=4)
    rng = np.random.default_rng(4)
    O, A, QP, QV = [], [], [], []
    for _ in range(6):
        O.append(obs)
        QP.append(env.unwrapped.data.qpos.copy())
        QV.append(env.unwrapped.data.qvel.copy())
        a = rng.uniform(-1, 1, 2).astype(np.float32)
        A.append(a)
        obs, *_ = env.step(a)
    # the reference: the env reset to each logged state (MuJoCo's render right after step() still shows the
    # geometry of the last substep's start, so "the state" means set_state, which recomputes it)
    truth = []
    for qp, qv in zip(QP, QV):
        env.unwrapped.set_state(qp, qv)
        truth.append(env.render())
    env.close()
    n = len(O)
    ds = Dataset(np.stack(O), np.stack(A), np.zeros(n, np.float32), np.zeros(n, bool), np.zeros(n, bool), [0],
                 env_id="Reacher-v5", source="reacher")
    fr = F.from_data(ds, 0, width=96, height=96)
    assert fr.ok, fr.why
    diff = np.abs(fr.frames.astype(int) - np.stack(truth))
    assert diff.max() == 0, (diff.max(), (diff > 0).mean())
    via_qpos = F.from_data(ds, 0, width=96, height=96, qpos=np.stack(QP), qvel=np.stack(QV))
    assert "set_state" in via_qpos.why and np.array_equal(via_qpos.frames, np.stack(truth))


def _hopper_d4rl(path, steps=20, seed=0, qpos_cols=None):
    """A D4RL-style file of a random Hopper-v5 rollout (two 10-step episodes split by timeouts) with infos/qpos and
    infos/qvel, the MuJoCo state at each observation; returns the qpos and qvel it wrote."""
    import h5py

    env = envs.make("Hopper-v5", terminate_when_unhealthy=False)
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    O, A, R, QP, QV = [], [], [], [], []
    for _ in range(steps):
        O.append(obs)
        QP.append(env.unwrapped.data.qpos.copy())
        QV.append(env.unwrapped.data.qvel.copy())
        A.append(rng.uniform(-1, 1, 3).astype(np.float32))
        obs, r, *_ = env.step(A[-1])
        R.append(r)
    env.close()
    QP, QV = np.stack(QP), np.stack(QV)
    with h5py.File(path, "w") as f:      # no env_id attribute: the D4RL name says Hopper
        f["observations"] = np.stack(O).astype(np.float32)
        f["actions"] = np.stack(A)
        f["rewards"] = np.array(R, np.float32)
        f["terminals"] = np.zeros(steps, bool)
        f["timeouts"] = np.isin(np.arange(steps), [steps // 2 - 1, steps - 1])
        f["infos/qpos"] = QP[:, :qpos_cols]
        f["infos/qvel"] = QV
    return QP, QV


def _set_state_renders(qpos, qvel, size=96):
    """env.render() after env.unwrapped.set_state(qpos[t], qvel[t]) for each t, in a fresh env whose first render is
    the first state (MuJoCo aims its camera at the bodies of its first render)."""
    env = envs.make("Hopper-v5", render_mode="rgb_array", width=size, height=size)
    env.reset(seed=0)
    out = []
    for qp, qv in zip(qpos, qvel):
        env.unwrapped.set_state(qp, qv)
        out.append(env.render())
    env.close()
    return np.stack(out)


def test_d4rl_hopper_frames_from_infos_qpos_qvel_equal_set_state_render(tmp_path):
    why = _gl_ok()
    if why:
        pytest.skip(why)
    from trajectories import load_dataset

    QP, QV = _hopper_d4rl(tmp_path / "hopper-random-v2.hdf5")
    ds = load_dataset(tmp_path / "hopper-random-v2.hdf5")
    assert ds.env_id == "Hopper-v5" and ds.n_episodes == 2 and ds.infos["qpos"].shape == (20, 6)
    for e, rows in ((0, slice(0, 10)), (1, slice(10, 20))):
        truth = _set_state_renders(QP[rows], QV[rows])
        fr = F.from_data(ds, e, width=96, height=96)     # qpos / qvel from the dataset's infos
        assert fr.ok and "set_state" in fr.why, fr.why
        assert np.array_equal(fr.frames, truth)          # bit-equal, as the Reacher test
        assert len({f.tobytes() for f in fr.frames}) > 5  # and the states differ
        # the episode alone (what the player and the video draw) carries its own rows
        assert np.array_equal(F.from_data(ds.select([e]), 0, width=96, height=96).frames, truth)
    part = F.from_data(ds, 1, start=3, max_frames=3, width=96, height=96)
    assert part.steps.tolist() == [3, 6, 9] and np.array_equal(part.frames, _set_state_renders(QP[[13, 16, 19]],
                                                                                              QV[[13, 16, 19]]))


def test_fast_mujoco_frames_are_the_render_without_shadows_and_reflections(tmp_path):
    """The player's preview (fast=True) equals env.render() with the scene's shadow and reflection flags off, the
    camera aimed at the first state as in a first render; it is not the full render."""
    why = _gl_ok()
    if why:
        pytest.skip(why)
    import mujoco

    from trajectories import load_dataset

    QP, QV = _hopper_d4rl(tmp_path / "hopper-random-v2.hdf5")
    ds = load_dataset(tmp_path / "hopper-random-v2.hdf5")
    fast = F.from_data(ds, 0, width=96, height=96, fast=True)
    env = envs.make("Hopper-v5", render_mode="rgb_array", width=96, height=96)
    env.reset(seed=0)
    env.unwrapped.set_state(QP[0], QV[0])
    viewer = env.unwrapped.mujoco_renderer._get_viewer("rgb_array")
    viewer.scn.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
    viewer.scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
    truth = []
    for qp, qv in zip(QP[:10], QV[:10]):
        env.unwrapped.set_state(qp, qv)
        truth.append(env.render())
    env.close()
    assert np.array_equal(fast.frames, np.stack(truth))
    assert not np.array_equal(fast.frames, _set_state_renders(QP[:10], QV[:10]))


def test_d4rl_hopper_without_infos_or_with_the_wrong_model_falls_back_with_a_sentence(tmp_path):
    import h5py

    from trajectories import DatasetError, load_dataset

    path = tmp_path / "hopper-medium-v2.hdf5"
    _hopper_d4rl(path, steps=12)
    with h5py.File(path, "a") as f:
        del f["infos"]
    ds = load_dataset(path)                  # reads as before the infos were kept
    assert ds.infos == {} and ds.env_id == "Hopper-v5" and ds.n_transitions == 12
    fr = F.from_data(ds, 0)
    assert fr.frames is None and "carries no infos/qpos and infos/qvel" in fr.why
    # qpos of another model (5 values, Hopper has 6): a sentence, not a MuJoCo exception
    why = _gl_ok()
    if why:
        pytest.skip(why)
    _hopper_d4rl(path, steps=12, qpos_cols=5)
    fr = F.from_data(load_dataset(path), 0, width=32)
    assert fr.frames is None and "5 qpos and 6 qvel values per step but Hopper-v5's model has 6 and 6" in fr.why
    assert fr.why.count(". ") == 0 and fr.steps.tolist() == list(range(6))
    # rows that do not match the observations are refused by the reader, before frames are asked for
    with h5py.File(path, "a") as f:
        del f["infos/qpos"]
        f["infos/qpos"] = np.zeros((11, 6))
    with pytest.raises(DatasetError, match=r"infos/qpos must be a 2-D float array with one row per observation \(12\)"):
        load_dataset(path)


# ---- data that cannot be drawn -----------------------------------------------------------------------------
def _flat(obs, env_id, actions=None):
    n = len(obs)
    acts = np.zeros(n, np.int64) if actions is None else actions
    return Dataset(np.asarray(obs, np.float32), acts, np.ones(n, np.float32), np.zeros(n, bool), np.zeros(n, bool), [0],
                   env_id=env_id, source="odd.npz")


@pytest.mark.parametrize("ds, words", [
    (_flat(np.zeros((5, 3)), "CartPole-v1"), "its observations have 3 features but CartPole-v1's have 4"),
    (_flat(np.zeros((5, 4)), None), "names no environment"),
    (_flat(np.zeros((5, 11)), "Hopper-v5", np.zeros((5, 3), np.float32)), "carries no infos/qpos and infos/qvel"),
    (_flat(np.zeros((5, 6)), "Acrobot-v1"), "does not know how to draw a state of Acrobot-v1"),
    (_flat(np.tile([2, 2, 0, 0, 1, -1, -1, 0, 4], (5, 1)), "seqlens/KeyToDoor-v0"), "starts after the key room"),
    (_flat(np.tile([9, 2, 1, 0, 0, 0, 0, -1, -1], (5, 1)), "seqlens/KeyToDoor-v0"), "are not Key-to-Door's"),
])
def test_observations_that_are_not_a_frame_get_one_sentence(ds, words):
    fr = F.from_data(ds, 0)
    assert fr.frames is None and fr.source is None
    assert words in fr.why and fr.why.endswith("a state-line plot stands in.")
    assert fr.why.count(". ") == 0 and "\n" not in fr.why    # one sentence
    assert words in fr.reason
    # a failure lists the steps that would have been drawn (plan_steps), not every step of the window
    planned = F.from_data(ds, 0, start=1, max_frames=2)
    assert planned.frames is None and planned.steps.tolist() == [1, 4]


class _NoImages(gym.Env):
    metadata = {"render_modes": ["human"]}
    observation_space = gym.spaces.Box(-1, 1, (2,))
    action_space = gym.spaces.Discrete(2)

    def __init__(self, render_mode=None):
        self.render_mode = render_mode

    def reset(self, *, seed=None, options=None):
        return np.zeros(2, np.float32), {}


def test_an_environment_without_rgb_array_gets_a_sentence():
    if "seqlens-test/NoImages-v0" not in gym.registry:
        gym.register("seqlens-test/NoImages-v0", entry_point=_NoImages)
    env, why = F.make_render_env("seqlens-test/NoImages-v0")
    assert env is None and "does not render to images" in why and "human" in why


@pytest.mark.skipif(ctypes.util.find_library("OSMesa") is not None, reason="OSMesa is installed: GL would work")
def test_a_missing_gl_library_is_one_sentence_not_a_traceback():
    code = ("import sys; sys.path.insert(0, '.'); import numpy as np; from trajectories import Dataset; "
            "from analysis.media.frames import from_data; "
            "ds = Dataset(np.zeros((3, 10), np.float32) + [1, 1, 0, 0, .1, .1, 0, 0, 0, 0], np.zeros((3, 2), np.float32), "
            "np.zeros(3, np.float32), np.zeros(3, bool), np.zeros(3, bool), [0], env_id='Reacher-v5'); "
            "print(from_data(ds, 0, width=32).why)")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "MUJOCO_GL": "osmesa", "PYOPENGL_PLATFORM": "osmesa"})
    assert res.returncode == 0, res.stderr
    line = res.stdout.strip()
    assert "\n" not in line and "Traceback" not in res.stderr
    assert "MUJOCO_GL=osmesa" in line and "GL library is missing or unusable" in line


# ---- bounds ------------------------------------------------------------------------------------------------
def test_a_million_step_episode_is_subsampled_before_rendering():
    T = 1_000_000
    obs = np.zeros((T, 4), np.float32)
    obs[:, 0] = np.linspace(-2, 2, T)       # the cart crosses the screen: each drawn step is a different frame
    ds = Dataset(obs, np.zeros(T, np.int64), np.ones(T, np.float32), np.zeros(T, bool), np.zeros(T, bool), [0],
                 env_id="CartPole-v1", source="huge")
    tracemalloc.start()
    fr = F.from_data(ds, 0, max_frames=6, width=60)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert fr.frames.shape == (6, 40, 60, 3)
    assert fr.steps.tolist() == [0, 200000, 400000, 599999, 799999, 999999]   # round(k * 999,999 / 5)
    assert "1,000,000 steps" in fr.note and "6 evenly spaced steps" in fr.note
    assert peak < 20 * 2**20        # a few small frames, never one per step (full size: 720 GB)
    assert len({f.tobytes() for f in fr.frames}) == 6


def test_default_bounds_and_their_overrides(monkeypatch):
    steps, note = F.plan_steps(10**6)
    assert len(steps) == F.MAX_FRAMES == 2000 and steps[0] == 0 and steps[-1] == 10**6 - 1
    assert "2,000 frames drawn at most" in note
    first, note = F.plan_steps(10**6, 50, "first")
    assert first.tolist() == list(range(50)) and "first 50 steps" in note
    assert F.plan_steps(300)[1] is None and len(F.plan_steps(300)[0]) == 300
    monkeypatch.setenv("SEQLENS_MAX_FRAMES", "100")
    assert len(F.plan_steps(10**6)[0]) == 100
    # 2,000 CartPole frames at 600 x 400 are 1.4 GB: shrunk to fit 512 MiB, the aspect kept
    (W, H), note = F.output_size((600, 400), 2000)
    assert 2000 * W * H * 3 <= F.MAX_FRAME_BYTES and abs(W / H - 1.5) < 0.02 and "over the 512 MiB bound" in note
    assert F.output_size((600, 400), 10, width=300) == ((300, 200), None)
    with pytest.raises(F.FramesError, match="at least 8 pixels"):
        F.output_size((600, 400), 10, width=3)


def test_steps_outside_the_episode_are_one_sentence(tiny_discrete):
    with pytest.raises(F.FramesError, match="not a stretch of the episode's 3 steps"):
        F.from_data(tiny_discrete, 0, start=5)
    with pytest.raises(F.FramesError, match="out of range"):
        F.from_data(tiny_discrete, 7)


def test_replay_renders_what_the_environment_shows_and_checks_it_is_the_same_episode():
    ds, truth = _run("CartPole-v1", _random_discrete, 30, seed=11)
    fr = F.replay("CartPole-v1", ds.actions, 11, observations=ds.observations)
    assert fr.ok and fr.source == "environment" and np.array_equal(fr.frames, truth)
    wrong = F.replay("CartPole-v1", ds.actions, 12, observations=ds.observations)
    assert wrong.frames is None and "did not reproduce its observation at step 0" in wrong.why
