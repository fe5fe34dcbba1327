"""Live play (issue 16, item 4): the user acts in the agent's environment, one step at a time, while a Decision
Transformer shows what it would do there: its proposed action (probabilities, or the continuous action), its value
(the return it infers with the return-to-go hidden) and where its action token looks over its context. The
return-to-go starts at the target and drops by each reward, as in a rollout. "Let the agent act" steps with the
agent's own choices, and the user can take over again at any step.

The DT sees the game exactly as it sees a rollout: its `DTRollout` (models/decision_transformer.py) is fed every
observation and reward, and when the user acts, `take()` replaces the action token it will read next. So a game
whose every step the agent took equals `models.rollout.run_episodes` of the same seed, and a game of the user's
actions reaches the state `env.reset(seed)` + `env.step(a)` reach in code (tests/test_live.py).

A game holds a live gymnasium environment and the agent's rollout state: it belongs to one session and is never
cached or shared. Every step is bounded by the environment's own limit and MAX_LIVE_STEPS.

Server-wide (trajectories/limits.py): at most `live_games` games at once (SEQLENS_MAX_LIVE_GAMES, 8), holding at most
`live_game_bytes` together (SEQLENS_MAX_LIVE_GAME_BYTES, 1 GiB; a MuJoCo game with its GL context ~90 MB, CartPole
~3 MB). Games are made one at a time, and each is charged the resident memory its making added (at least
MIN_GAME_BYTES). A game past a cap is refused with one sentence before its environment is made. A game that is closed,
or dropped (its session ended), closes its environment on its own thread, joins that thread, leaves the count and
hands the freed memory back to the system (glibc's malloc_trim: without it a process that had eight MuJoCo games
kept ~230 MB of freed arena pages; tests/test_server_caps.py).
"""
from __future__ import annotations

import ctypes
import itertools
import numbers
import os
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np


MAX_LIVE_STEPS = int(os.environ.get("SEQLENS_MAX_LIVE_STEPS", 2_000))   # a game's steps at most (frames kept: one)
MAX_AGENT_STEPS = 500     # steps one "let the agent act" runs at most before handing back
SEED_MAX = 2**32 - 1      # a reset seed (numpy's, gymnasium's)
RETURN_MAX = 1e9          # |target return| (as the catalog's figures: analysis.publish.catalog.RETURN_MAX)
MIN_GAME_BYTES = 4 << 20  # what a game is charged at least (its measured memory can hide in freed pages it reused)


class LiveError(ValueError):
    """A game or action live play cannot take; str() is one sentence."""


@dataclass
class AgentView:
    """What the agent computes at the current step (a Decision Transformer; None fields: not available)."""

    proposed: np.ndarray          # discrete: probabilities [n_actions]; continuous: the action [act_dim] (env units)
    chosen: np.ndarray            # the action it takes if it acts now (sampled or argmax, as its rollout does)
    value: float | None           # the value head (return inferred with the RTG hidden), raw return units
    attention: np.ndarray | None  # [K, 3] the action token's attention per step back (0 = now) and token R, s, a


class LiveGame:
    """One episode in `env_id` (default: the agent's), reset with `seed`; a DT agent is asked for `target` return
    (default: the best return of its training data)."""

    def __init__(self, agent, env_id: str | None = None, seed: int = 0, target: float | None = None,
                 sample: bool = False, render: bool = True):
        import envs

        self.agent, self.why_no_agent = agent, _why_no_view(agent)
        if self.why_no_agent is not None:
            self.agent = None
        env_id = env_id or (agent.config.env_id if agent is not None else None)
        if not env_id:
            raise LiveError("live play needs an environment: the agent names none (choose one on the home page).")
        try:
            self.env_id = envs.check_env_id(envs.resolve_env_id(env_id))
        except ValueError as e:   # EnvIdError is one
            raise LiveError(str(e)) from None
        if self.agent is not None and self.env_id != self.agent.config.env_id:   # the agent's spaces must fit it
            from models.env_choice import with_env
            from models.errors import AgentError

            try:
                self.agent = with_env(self.agent, self.env_id)
            except AgentError as e:
                raise LiveError(str(e)) from None
        self.seed = _whole("seed", seed, SEED_MAX)
        if target is not None:   # checked again where it is used; here so that a bad one makes nothing
            _number("target return", target, RETURN_MAX)
        self._slot = _GAMES.reserve(self.env_id)   # the server's caps: a sentence here, before anything is made
        try:
            with _GAMES.making:   # one game made at a time, so the memory its making adds is its own
                self._make(target, sample, render)
        except BaseException:
            closer = getattr(self, "_closer", None)
            if closer is not None:
                closer()   # closes the environment and its thread, and leaves the count
            else:
                if getattr(self, "_thread", None) is not None:
                    self._thread.shutdown(wait=True)
                _GAMES.release(self._slot)
            raise

    def _make(self, target, sample, render) -> None:
        import envs

        from analysis.media.frames import make_render_env

        before = _rss()
        # A page reruns in a new thread each time, and MuJoCo's EGL context belongs to the thread that made it (from
        # another, render() drew black frames): every call into the environment goes through one thread of its own.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="seqlens-live-env")
        self.env, self.render_why = self._on_env_thread(
            lambda: make_render_env(self.env_id, agent=self.agent) if render else (None, "rendering was not asked for"))
        if self.env is None:   # no frames; the game still plays, the observation stands in
            from models.rollout import make_agent_env

            try:
                self.env = self._on_env_thread(lambda: make_agent_env(self.env_id, self.agent))
            except Exception as e:  # noqa: BLE001 - a missing dependency (mujoco) or a broken registration
                self._thread.shutdown(wait=False)
                raise LiveError(f"{self.env_id} cannot be made here ({type(e).__name__}: {str(e)[:120]}).") from None
        # a game left in an ended session's state: its environment (a MuJoCo GL context) is closed on its own thread
        self._closer = weakref.finalize(self, _close, self._thread, self.env, self._slot)
        self._closer.atexit = False   # at exit the process goes, and the executors are already shut down
        spec = self.env.spec
        self.limit = min(MAX_LIVE_STEPS, int(spec.max_episode_steps or MAX_LIVE_STEPS) if spec else MAX_LIVE_STEPS)
        self.space = self.env.action_space
        self.discrete = hasattr(self.space, "n")
        self.labels = envs.ACTION_LABELS.get(self.env_id) or (_labels(self.env) if self.discrete else [])
        self.act_names = envs.ACT_NAMES.get(self.env_id) or [f"a{i}" for i in range(int(np.prod(self.space.shape)))]
        obs, _ = self._on_env_thread(lambda: self.env.reset(seed=self.seed))
        if self.render_why is None:   # the first frame, as the page draws it: MuJoCo's GL buffers are charged to the game
            self.frame()
        self.shaped = np.ndim(obs) > 1   # a MiniGrid view / an Atari stack: kept as the agent reads it (uint8)
        self.observations = [self._kept(obs)]
        self.actions, self.rewards, self.by_agent = [], [], []
        self.terminated = self.truncated = False
        self.target = None
        self.track = []          # (return-to-go, value) at each step the agent was asked
        self.attentions = []     # [K] the action token's attention per step back (0 = now) at each step asked
        self.rollout = None
        self.view = None
        if self.agent is not None and self.agent.has("return_conditioned"):
            if target is None:
                from analysis.behaviour.sweeps import return_range

                target = return_range(self.agent)[1] if "return_max" in self.agent.config.dataset else 0.0
            self.target = _number("target return", target, RETURN_MAX)
            self.rollout = self.agent.start_rollout(1, [self.target], sample=bool(sample), seed=self.seed,
                                                    record_attention=self.agent.has("attention"))
        elif self.agent is not None:   # an MLP or GRU policy: its proposal only (no return-to-go, value or attention)
            self.rollout = self.agent.start_rollout(1, None, sample=bool(sample), seed=self.seed)
        if self.rollout is not None:
            self._think()
        _GAMES.charge(self._slot, self.env_id, _rss() - before)   # past the memory cap: refused (closed by __init__)

    # ---- state ----------------------------------------------------------------------------------------
    @property
    def t(self) -> int:
        return len(self.actions)

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated or self.t >= self.limit

    @property
    def episode_return(self) -> float:
        return float(np.sum(self.rewards))

    @property
    def rtg(self) -> float | None:
        """The return-to-go the DT is conditioned on now: the target less every reward so far."""
        return None if self.target is None else self.target - self.episode_return

    def frame(self) -> np.ndarray | None:
        """The environment's image of the current state, or None (render_why says why)."""
        if self.render_why is not None:
            return None
        return self._on_env_thread(self.env.render)

    def _kept(self, obs) -> np.ndarray:
        return np.array(obs) if self.shaped else np.asarray(obs, np.float64).ravel()

    def view_frame(self) -> np.ndarray | None:
        """A grid / pixel game's picture: the agent's own observation (analysis/media/agent_view.py: the MiniGrid view
        as cells, the last 84x84 frame enlarged) beside the full render; None for vector observations."""
        if not self.shaped:
            return None
        from analysis.media import agent_view

        full = self.frame()
        mine = agent_view.view(self.observations[-1], None if full is None else full.shape[0])
        return None if mine is None else agent_view.beside(mine, full)

    def action_text(self, action) -> str:
        from analysis.media.video import action_texts

        a = np.asarray(action)
        return action_texts(a.reshape(1) if self.discrete else a.reshape(1, -1), self.labels, self.act_names)[0]

    # ---- acting ---------------------------------------------------------------------------------------
    def check_action(self, action):
        """The action as the environment takes it, or LiveError: a discrete index in range, or a finite vector of the
        action space's shape within its bounds."""
        if self.discrete:
            n = int(self.space.n)
            if isinstance(action, bool) or not isinstance(action, numbers.Integral | np.integer) or not 0 <= action < n:
                raise LiveError(f"an action in {self.env_id} is a whole number from 0 to {n - 1}, got {action!r}.")
            return int(action)
        a = np.asarray(action, np.float32)
        shape = self.space.shape
        if a.shape != shape and a.size == int(np.prod(shape)):
            a = a.reshape(shape)
        if a.shape != shape or not np.isfinite(a).all() or (a < self.space.low).any() or (a > self.space.high).any():
            raise LiveError(f"an action in {self.env_id} is {int(np.prod(shape))} finite number(s) within "
                            f"[{_bounds(self.space.low)}, {_bounds(self.space.high)}], got {np.asarray(action).tolist()!r}.")
        return a

    def step(self, action=None) -> None:
        """One step: the user's `action`, or (None) the agent's own choice."""
        if self.done:
            raise LiveError("the episode is over; start a new one.")
        mine = action is None
        if mine:
            if self.view is None:
                why = self.why_no_agent
                raise LiveError(f"no agent can act here: {why[0].lower()}{why[1:]}")
            action = self.view.chosen.item() if self.discrete else self.view.chosen
        action = self.check_action(action)
        if not mine and self.rollout is not None:
            self.rollout.take(np.asarray([action]))
        obs, reward, term, trunc, _ = self._on_env_thread(lambda: self.env.step(action))
        self.actions.append(action)
        self.by_agent.append(mine)
        self.rewards.append(float(reward))
        self.observations.append(self._kept(obs))
        self.terminated, self.truncated = bool(term), bool(trunc)
        if self.rollout is not None:
            self.rollout.observe(np.array([reward], np.float32))
            if not self.done:
                self._think()

    def agent_steps(self, steps: int = 1):
        """The agent's next `steps` steps (bounded by MAX_AGENT_STEPS and the episode's end) one at a time: an iterator
        that takes a step per item and yields how many it has taken, so a page can draw each one before the next (Live
        play animates them). The bound is checked now, before any step."""
        steps = _whole("steps", steps)
        if not 1 <= steps <= MAX_AGENT_STEPS:
            raise LiveError(f"the agent acts 1 to {MAX_AGENT_STEPS} steps at a time, got {steps}.")
        return self._steps(steps)

    def _steps(self, steps: int):
        n = 0
        while n < steps and not self.done:
            self.step(None)
            n += 1
            yield n

    def agent_acts(self, steps: int = 1, progress=None) -> int:
        """The agent takes up to `steps` steps (bounded by MAX_AGENT_STEPS and the episode's end); the steps taken."""
        n = 0
        for n in self.agent_steps(steps):
            if progress is not None:
                progress(n / steps, f"step {self.t}")
        return n

    def _think(self) -> None:
        """The agent at the current observation: its action (the rollout's own) and proposal; a DT's value and
        attention too."""
        ro = self.rollout
        chosen = ro.act(self.observations[-1][None].astype(np.float32))[0]
        attention = None
        if ro.attention is not None:
            attention = ro.attention[0].mean((0, 1))[::-1].astype(np.float64)   # [K, 3], now first
        value = float(ro.value()[0]) if self.agent.has("value") else None
        self.view = AgentView(ro.policy()[0].astype(np.float64), np.asarray(chosen), value, attention)
        self.track.append((self.rtg, np.nan if value is None else value))
        self.attentions.append(None if attention is None else attention.sum(-1))   # [K] per step back, for clip()

    def _on_env_thread(self, fn):
        return self._thread.submit(fn).result()

    def close(self) -> None:
        self._closer()

    # ---- the game so far ------------------------------------------------------------------------------
    def history(self) -> dict[str, np.ndarray]:
        """Per step the agent was asked (every observation until the end): the return-to-go it was given, its value,
        the return earned before the step and whether the agent took the step (False: the user, or not yet taken)."""
        n = len(self.track)
        track = np.asarray(self.track, np.float64).reshape(n, 2)
        earned = np.concatenate([[0.0], np.cumsum(self.rewards)])[:n]
        by_agent = np.array(self.by_agent + [False] * n, bool)[:n]
        return {"rtg": track[:, 0], "value": track[:, 1], "earned": earned, "by_agent": by_agent}

    def clip(self, width: int | None = None, fps: float | None = None):
        """The game so far as an analysis.media.video.EpisodeClip (GIF / MP4 with step, action and who took it, reward, the
        return-to-go the DT was asked for and its attention as it acted under each frame; `width` px wide, by default
        video.PAGE_WIDTH) and its per-step table."""
        import pandas as pd

        from analysis.media.video import PAGE_WIDTH, EpisodeClip

        one = self.to_dataset()
        T = one.n_transitions
        h = self.history()
        rtg = None if self.target is None else h["rtg"][:T]
        att = None
        if self.attentions and all(a is not None for a in self.attentions[:T]):
            att = np.stack(self.attentions[:T])
        who = ["agent" if a else "you" for a in self.by_agent]
        title = f"Live play in {self.env_id} (reset seed {self.seed}" + (
            f", target return {self.target:g})" if self.target is not None else ")")
        clip = EpisodeClip(one, self.env_id, title, rtg, "return-to-go", att, None if att is None else np.arange(T),
                           0, None, width or PAGE_WIDTH, fps, None, self.seed, actors=who)
        data = pd.DataFrame({"step": np.arange(T), "by": who, "action": [self.action_text(a) for a in self.actions],
                             "reward": self.rewards})
        if rtg is not None:
            data["return_to_go"] = rtg
            data["value"] = h["value"][:T]
        return clip, data

    def to_dataset(self):
        """The steps so far as a one-episode Dataset (for the player, exports): observations before each action."""
        from models.rollout import one_episode

        T = self.t
        if T == 0:
            raise LiveError("no step has been taken yet.")
        obs = np.stack(self.observations[:T])
        one = one_episode(self.env_id, obs if obs.dtype == np.uint8 else obs.astype(np.float32),
                          np.asarray(self.actions, np.int64 if self.discrete else np.float32),
                          np.asarray(self.rewards, np.float32), self.terminated,
                          f"live play in {self.env_id} (seed {self.seed})",
                          int(self.space.n) if self.discrete else None)
        if self.shaped:   # frames of a grid / pixel game replay it to draw the full state beside the agent's view
            one.metadata["reset_seed"] = int(self.seed)
        return one


def _labels(env) -> list[str]:
    """Action names of an env the tables in envs/ do not list: a MiniGrid task's (its Actions enum), an Atari game's
    (ale-py's action meanings), else "action i"."""
    n = int(env.action_space.n)
    base = env.unwrapped
    try:
        if hasattr(base, "get_action_meanings"):
            return [str(m) for m in base.get_action_meanings()][:n]
        if hasattr(base, "actions"):   # MiniGrid: left, right, forward, pickup, drop, toggle, done
            return [base.actions(i).name for i in range(n)]
    except Exception:  # noqa: BLE001 - the names are a nicety; the numbers still play
        pass
    return [f"action {i}" for i in range(n)]


def _why_no_view(agent) -> str | None:
    """Why live play shows no agent's view beside the game (None: it shows one)."""
    if agent is None:
        return "No agent is loaded."
    if agent.has("planning"):
        return ("A Trajectory Transformer plans by beam search at every step (seconds a step), too slow to play "
                "beside; live play shows a Decision Transformer's, MLP's or GRU's view.")
    if not agent.has("acts"):
        return f"This {agent.kind} agent does not act; live play shows a Decision Transformer's, MLP's or GRU's view."
    return None


def _close(thread: ThreadPoolExecutor, env, slot: int | None = None) -> None:
    try:
        thread.submit(env.close).result()
    except RuntimeError:   # the executor is already shut down: close it here
        env.close()
    finally:
        # join the thread unless this is it (a finalizer can run on any thread)
        thread.shutdown(wait=not threading.current_thread().name.startswith("seqlens-live-env"))
        if slot is not None:
            _GAMES.release(slot)
        trim()


class _Games:
    """The live games the process plays now (a count and their measured bytes), capped by limits()."""

    def __init__(self):
        self._lock = threading.Lock()      # the registry
        self.making = threading.Lock()     # games are made one at a time: each one's memory is its own
        self._ids = itertools.count()
        self.bytes: dict[int, int] = {}    # slot -> bytes charged
        self.last: dict[str, int] = {}     # env id -> bytes its last game was charged (the next one's estimate)
        self.collected = -1e9              # when a refusal last ran the garbage collector

    def __len__(self) -> int:
        return len(self.bytes)

    @property
    def total(self) -> int:
        return sum(self.bytes.values())

    def reserve(self, env_id: str) -> int:
        """A slot for a game in env_id, or LiveError (one sentence) when the server plays its limit already."""
        from trajectories.limits import human_bytes, limits

        for attempt in (0, 1):
            lim = limits()
            with self._lock:
                n, held = len(self.bytes), self.total
                need = self.last.get(env_id, MIN_GAME_BYTES)
                if n < lim.live_games and held + need <= lim.live_game_bytes:
                    slot = next(self._ids)
                    self.bytes[slot] = need
                    return slot
            if attempt == 0 and time.monotonic() - self.collected > 10:
                # games of ended sessions that sit in reference cycles: collected now, not later (at most every 10 s:
                # a refusal must stay cheap)
                import gc

                self.collected = time.monotonic()
                gc.collect()
        if n >= lim.live_games:
            raise LiveError(f"The server is already playing {n} live games, its limit (SEQLENS_MAX_LIVE_GAMES); try "
                            "again in a moment, when another session's game has ended.")
        raise LiveError(f"The server's live games hold {human_bytes(held)} and a game in {env_id} takes about "
                        f"{human_bytes(need)}, past their limit of {human_bytes(lim.live_game_bytes)} "
                        "(SEQLENS_MAX_LIVE_GAME_BYTES); try again in a moment, when another session's game has ended.")

    def charge(self, slot: int, env_id: str, measured: int) -> None:
        """The game in `slot` is made and added `measured` bytes; past the memory cap it is refused (LiveError)."""
        from trajectories.limits import human_bytes, limits

        cost = max(int(measured), MIN_GAME_BYTES)
        cap = limits().live_game_bytes
        with self._lock:
            self.last[env_id] = cost
            if slot not in self.bytes:
                return
            self.bytes[slot] = cost
            others = self.total - cost
        if others + cost > cap:
            raise LiveError(f"A game in {env_id} takes {human_bytes(cost)}, and with the server's other live games "
                            f"({human_bytes(others)}) that passes their limit of {human_bytes(cap)} "
                            "(SEQLENS_MAX_LIVE_GAME_BYTES); try again in a moment, when another session's game has ended.")

    def release(self, slot: int) -> None:
        with self._lock:
            self.bytes.pop(slot, None)


_GAMES = _Games()


def live_games() -> tuple[int, int]:
    """(games the process plays now, the bytes they are charged)."""
    return len(_GAMES), _GAMES.total


def _rss() -> int:
    """This process's resident bytes (0 where /proc is not there: then only the count cap applies)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


_LIBC = []


def trim() -> None:
    """Hand freed heap pages back to the system (glibc malloc_trim). Closing a MuJoCo game frees ~90 MB that glibc
    otherwise keeps in its arenas (measured: eight Reacher games dropped left 229 MB; trimmed, 2 MB)."""
    if not _LIBC:
        try:
            _LIBC.append(ctypes.CDLL("libc.so.6").malloc_trim)
        except (OSError, AttributeError):   # not glibc (macOS, musl): nothing to trim
            _LIBC.append(None)
    if _LIBC[0] is not None:
        _LIBC[0](0)


def _whole(name, value, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) or value != int(value) \
            or value < 0:
        raise LiveError(f"{name} must be a whole number of at least 0, got {value!r}.")
    if high is not None and value > high:
        raise LiveError(f"{name} must be a whole number between 0 and {high}, got {value!r}.")
    return int(value)


def _number(name, value, bound: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise LiveError(f"{name} must be a finite number, got {value!r}.")
    if bound is not None and abs(value) > bound:
        raise LiveError(f"{name} must be between {-bound:g} and {bound:g}, got {value!r}.")
    return float(value)


def _bounds(a) -> str:
    a = np.asarray(a).ravel()
    return f"{a[0]:g}" if np.all(a == a[0]) else "[" + ", ".join(f"{v:g}" for v in a) + "]"
