"""The one rollout engine: agents acting in a batched vector environment, one episode per env.

Every episode seqlens runs (evaluation, return sweeps, the context ablation, the naive twins of the
benchmarks) goes through `run_episodes`:

- the environment is made with `envs.make_vec` (ids checked there), env i reset with seed
  `seed + i` (or `env_seeds[i]`), all envs stepped together; an env whose episode ended is autoreset
  by gymnasium and ignored from then on (its rewards, actions and observations are not counted);
- the agent acts through its own `start_rollout` (KV-cached where the model allows);
- `uniforms` [n, T] give env i its own stream of action draws (a Decision Transformer's discrete
  sample at step t is `uniforms[i, t]`), so an episode is the same whatever batch it runs in:
  `episode_uniforms` makes the per-episode streams;
- `context` limits the history a Decision Transformer's action may see, per env (K' steps);
- `interventions` ({activation name or glob: fn}, models/activations.py) act inside a Decision
  Transformer's blocks at every step (ablations in the environment);
- `record` keeps observations, actions, rewards and the action token's attention per step;
- `progress(fraction, message)` is called after every step (fraction = episodes finished).

`episode_limit` is the one place the step limit of an episode is read. `make_agent_env` is the one place an agent's
environment is made as the agent saw it: a MiniGrid grid through DTI's wrappers (view size and one-hot read from the
agent's obs_shape) down to the `image` the agent embeds; Atari ids already give the DT paper's (4, 84, 84) uint8 stack.
Recorded observations keep the observation's own shape (and uint8 where the env gives uint8).
models/ never imports analysis/.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import gymnasium as gym
import numpy as np

import envs  # registers seqlens' environments; envs.make_vec / check_env_id are the only way to an env

from .errors import AgentError

Progress = Callable[[float, str], None]
RECORDABLE = ("observations", "actions", "rewards", "attention")


def episode_limit(env_id: str, agent=None) -> int:
    """Steps an episode may last: the environment's registered time limit, else the agent's max_ep_len."""
    spec = gym.spec(envs.check_env_id(env_id))
    if spec.max_episode_steps:
        return int(spec.max_episode_steps)
    if agent is None:
        raise AgentError(f"{env_id} has no time limit; pass an agent (its max_ep_len bounds the episode).")
    return int(agent.config.max_ep_len)


def is_grid_env(env_id: str) -> bool:
    """A MiniGrid task (MiniGrid's own ids, or DTI's ids registered by envs/)."""
    return str(env_id).startswith("MiniGrid-") or env_id in envs.GRID_ENV_IDS


class GridImage(gym.ObservationWrapper):
    """MiniGrid's dict observation -> its `image` alone (what a DTI agent embeds); `last_obs` keeps the whole dict
    (direction, mission) of the latest reset / step for whoever shows it."""

    def __init__(self, env):
        super().__init__(env)
        self.observation_space = env.observation_space["image"]
        self.last_obs = None

    def observation(self, obs):
        self.last_obs = obs
        return obs["image"]


def grid_settings(shape=()) -> dict:
    """make_dti_env's view_size / one_hot_obs for an agent's observation shape (view, view, 3 codes or 20 one-hot
    bits); the default 7x7 coded view for any other shape."""
    from envs.minigrid_dti import ONE_HOT_BITS

    shape = tuple(int(n) for n in shape or ())
    if len(shape) == 3 and shape[0] == shape[1] and shape[2] in (3, ONE_HOT_BITS):
        return {"view_size": shape[0], "one_hot_obs": shape[2] == ONE_HOT_BITS}
    return {"view_size": 7, "one_hot_obs": False}


def make_agent_env(env_id: str, agent=None, render_mode: str | None = None, obs_shape=None) -> gym.Env:
    """One environment whose observations are what the agent was trained on: a MiniGrid task wrapped as DTI wraps it
    (envs/minigrid_dti.make_dti_env, the view's size and one-hot bits from the agent's obs_shape, or `obs_shape`
    given instead of an agent) and reduced to its image (GridImage); any other id as envs.make makes it."""
    env_id = envs.check_env_id(env_id)
    if is_grid_env(env_id):
        from envs.minigrid_dti import make_dti_env

        if obs_shape is None and agent is not None:
            from .env_choice import observation_shape

            obs_shape = observation_shape(agent)
        hp = agent.config.hparams if agent is not None and isinstance(agent.config.hparams, dict) else {}
        # DTI's make_env sets the episode's limit from its environment_config's max_steps (the import's max_ep_len - 1)
        max_steps = int(agent.config.max_ep_len) - 1 if str(hp.get("hf_import", "")).startswith("dti:") else None
        return GridImage(make_dti_env(env_id, render_mode=render_mode, max_steps=max_steps, **grid_settings(obs_shape)))
    return envs.make(env_id, **({"render_mode": render_mode} if render_mode else {}))


def make_agent_vec(env_id: str, n_envs: int, agent=None):
    """n_envs of make_agent_env in one synchronous vector env (non-grid ids: envs.make_vec, as before)."""
    if is_grid_env(envs.check_env_id(env_id)):
        return gym.vector.SyncVectorEnv([lambda: make_agent_env(env_id, agent) for _ in range(n_envs)])
    return envs.make_vec(env_id, num_envs=n_envs, vectorization_mode="sync")


def episode_uniforms(n_envs: int, steps: int, seed: int) -> np.ndarray:
    """[n_envs, steps] float32 action draws; row i depends on (seed, i) only, so episode i draws alike
    whether it runs in a batch or alone."""
    return np.stack([np.random.default_rng([seed, i]).random(steps) for i in range(n_envs)]).astype(np.float32)


@dataclass
class Episodes:
    """One episode per env. Recorded arrays run to S = the longest episode (zeros past each end)."""

    returns: np.ndarray                    # [n] float64, rewards summed until the episode ended
    lengths: np.ndarray                    # [n] steps, the ending step included
    env_id: str
    observations: np.ndarray | None = None  # [n, S, *obs_shape] the observation each action answered (float32;
                                            # uint8 where the env gives uint8: grids, Atari frame stacks)
    actions: np.ndarray | None = None       # [n, S] int64 or [n, S, act_dim] float32
    rewards: np.ndarray | None = None       # [n, S] float32
    attention: np.ndarray | None = None     # [n, S, n_layer, n_head, K, 3] the action token's attention
                                            # over the last K steps (oldest first) x (R, s, a) tokens

    @property
    def n(self) -> int:
        return len(self.returns)

    def concat(self, other: "Episodes") -> "Episodes":
        """Episodes of both runs, this one's first (recorded arrays padded to the longer S)."""
        S = max(self._steps(), other._steps())

        def cat(a, b):
            if a is None or b is None:
                return None
            return np.concatenate([_pad(a, S), _pad(b, S)])
        return Episodes(np.concatenate([self.returns, other.returns]), np.concatenate([self.lengths, other.lengths]),
                        self.env_id, *(cat(getattr(self, k), getattr(other, k)) for k in RECORDABLE))

    def _steps(self) -> int:
        return int(self.lengths.max()) if len(self.lengths) else 0


def _pad(a: np.ndarray, S: int) -> np.ndarray:
    if a.shape[1] >= S:
        return a[:, :S]
    return np.concatenate([a, np.zeros((a.shape[0], S - a.shape[1], *a.shape[2:]), a.dtype)], 1)


class _Recorder:
    """Per-step arrays of n envs until each one's first episode ends (autoreset steps ignored)."""

    def __init__(self, what, n: int, steps: int, obs: np.ndarray, agent):
        self.what = set(what)
        self.arrays = {}
        if "observations" in self.what:
            dtype = np.uint8 if obs.dtype == np.uint8 else np.float32
            self.arrays["observations"] = np.zeros((n, steps, *obs.shape[1:]), dtype)
        if "actions" in self.what:
            self.arrays["actions"] = (np.zeros((n, steps), np.int64) if agent.discrete
                                      else np.zeros((n, steps, agent.act_dim), np.float32))
        if "rewards" in self.what:
            self.arrays["rewards"] = np.zeros((n, steps), np.float32)
        self.attention = [] if "attention" in self.what else None

    def add(self, t: int, live: np.ndarray, obs, actions, rewards, attention) -> None:
        a = self.arrays
        if "observations" in a:
            a["observations"][live, t] = np.asarray(obs)[live]
        if "actions" in a:
            a["actions"][live, t] = np.asarray(actions)[live]
        if "rewards" in a:
            a["rewards"][live, t] = np.asarray(rewards)[live]
        if self.attention is not None:
            att = np.asarray(attention, np.float32).copy()
            att[~live] = 0
            self.attention.append(att)

    def finish(self, S: int) -> dict:
        out = {k: v[:, :S] for k, v in self.arrays.items()}
        if self.attention is not None:
            out["attention"] = np.stack(self.attention, 1)[:, :S]
        return out


def acted_on(obs):
    """What an agent reads of a (batched) observation: a MiniGrid dict's image (as the Dataset keeps it and DTI's
    agents embed it; direction and mission are not model inputs), anything else as it is."""
    return obs["image"] if isinstance(obs, dict) and "image" in obs else obs


def run_episodes(agent, n_envs: int, target_returns=None, *, seed: int = 0, env_seeds=None, env_id: str | None = None,
                 sample: bool = True, uniforms: np.ndarray | None = None, use_cache: bool = True, context=None,
                 record=(), progress: Progress | None = None, limit: int | None = None,
                 interventions=None) -> Episodes:
    """One episode in each of n_envs environments, stepped together in one vector env.

    target_returns [n_envs] raw return units (Decision Transformers only; None for other agents).
    env_seeds [n_envs] reset seeds (default seed + i); `seed` also seeds the agent's own generator.
    uniforms [n_envs, T]: env i's action draws (see episode_uniforms); None: the agent's seeded generator.
    use_cache=False: the agent's naive twin (recompute every step). context: an int or [n_envs] ints,
    the steps of history a Decision Transformer's action may see (None: all it would see).
    record: any of "observations", "actions", "rewards", "attention" (Decision Transformers).
    limit: steps at most (default episode_limit(env_id, agent)).
    interventions: {name or glob: fn} on a Decision Transformer's `blocks.*` activations, applied at every
    step (DTRollout); None or {}: the plain rollout."""
    env_id = env_id or agent.config.env_id
    if not env_id:
        raise AgentError("the agent does not name an environment (env_id); choose one (cli.py --env ID, or Environment on the home page).")
    unknown = set(record) - set(RECORDABLE)
    if unknown:
        raise ValueError(f"cannot record {', '.join(sorted(unknown))} (known: {', '.join(RECORDABLE)}).")
    steps = int(limit or episode_limit(env_id, agent))
    options = {}
    if uniforms is not None:
        options["uniforms"] = uniforms
    if not use_cache:
        options["use_cache"] = False
    if context is not None:
        options["context"] = context
    if interventions:
        if not agent.has("step_tokens"):
            raise AgentError(f"interventions in a rollout need a Decision Transformer; this agent is a {agent.kind}.")
        options["interventions"] = interventions
    if "attention" in record:
        if not (agent.has("step_tokens") and agent.has("attention")):
            raise AgentError(f"recording attention needs a Decision Transformer; this agent is a {agent.kind}.")
        options["record_attention"] = True
    vec = make_agent_vec(env_id, n_envs, agent)
    try:
        obs, _ = vec.reset(seed=seed if env_seeds is None else [int(s) for s in env_seeds])
        obs = acted_on(obs)
        ro = agent.start_rollout(n_envs, target_returns, sample=sample, seed=seed, **options)
        rec = _Recorder(record, n_envs, steps, np.asarray(obs), agent) if record else None
        returns = np.zeros(n_envs)
        lengths = np.zeros(n_envs, np.int64)
        done = np.zeros(n_envs, bool)
        for t in range(steps):
            actions = ro.act(obs)
            nxt, rewards, term, trunc, _ = vec.step(actions)
            ro.observe(rewards)
            live = ~done
            if rec is not None:
                rec.add(t, live, obs, actions, rewards, ro.attention)
            returns += np.where(done, 0.0, rewards)   # envs past their episode end are autoreset: ignored
            lengths[live] = t + 1
            done |= np.asarray(term | trunc, bool)
            obs = acted_on(nxt)
            if progress is not None:
                progress(float(done.mean()), f"step {t + 1}: {int(done.sum())}/{n_envs} episodes finished")
            if done.all():
                break
            ro.skip_done(done)
    finally:
        vec.close()
    S = int(lengths.max()) if n_envs else 0
    return Episodes(returns, lengths, env_id, **(rec.finish(S) if rec is not None else {}))


def run_one_at_a_time(agent, n_envs: int, target_returns=None, *, seed: int = 0, env_seeds=None, **kwargs) -> Episodes:
    """run_episodes for each env alone (a vector env of one), concatenated: what a batched run must equal
    when every env has its own random stream (`uniforms`). The naive twin of the benchmarks."""
    seeds = [seed + i for i in range(n_envs)] if env_seeds is None else [int(s) for s in env_seeds]
    targets = None if target_returns is None else np.broadcast_to(np.asarray(target_returns, float), (n_envs,))
    per_env = {k: kwargs.pop(k) for k in ("uniforms", "context") if kwargs.get(k) is not None and np.ndim(kwargs[k])}
    out = None
    for i in range(n_envs):
        one = run_episodes(agent, 1, None if targets is None else targets[i:i + 1], seed=seed, env_seeds=[seeds[i]],
                           **{k: v[i:i + 1] for k, v in per_env.items()}, **kwargs)
        out = one if out is None else out.concat(one)
    return out


def one_episode(env_id: str, observations, actions, rewards, terminated: bool, source: str, n_actions=None):
    """Steps taken in env_id as a one-episode trajectories.Dataset: its last step terminated (else truncated: cut
    at a limit, or still going), the env's feature names where they fit the arrays."""
    from trajectories import Dataset

    T = len(rewards)
    flags = {True: np.zeros(T, bool), False: np.zeros(T, bool)}
    flags[bool(terminated)][-1] = True
    obs_names, act_names = envs.OBS_NAMES.get(env_id), envs.ACT_NAMES.get(env_id)
    act_dim = 1 if np.ndim(actions) == 1 else np.shape(actions)[1]
    return Dataset(observations, actions, rewards, flags[True], flags[False], np.array([0]),
                   obs_names=obs_names if obs_names and np.ndim(observations) == 2
                   and len(obs_names) == np.shape(observations)[1] else None,
                   act_names=act_names if act_names and len(act_names) == act_dim else None,
                   env_id=env_id, source=source, n_actions=n_actions)


def episode_dataset(agent, env_seed: int, target_return=None, *, seed: int = 0, limit: int | None = None,
                    attention: bool = False):
    """One episode of the agent acting in its environment (reset seed `env_seed`; a DT asked for `target_return` raw
    return units) as (a one-episode trajectories.Dataset, with attention=True a DT's action-token attention as it
    acted [T, n_layer, n_head, K, 3] (oldest step first) else None, a DT's return-to-go as it was asked at each step
    (the target less the rewards before it) else None). The caller checks that the agent can act."""
    dt = agent.has("return_conditioned")
    if dt and target_return is None:
        raise ValueError("a Decision Transformer's rollout needs a target return.")
    record = ("observations", "actions", "rewards") + (
        ("attention",) if attention and agent.has("step_tokens") and agent.has("attention") else ())
    ep = run_episodes(agent, 1, [float(target_return)] if dt else None, seed=seed, env_seeds=[int(env_seed)],
                      record=record, limit=limit)
    T = int(ep.lengths[0])
    ended_early = T < int(limit or episode_limit(ep.env_id, agent))   # before its limit it ended; at it, it was cut
    one = one_episode(ep.env_id, ep.observations[0, :T], ep.actions[0, :T], ep.rewards[0, :T], ended_early,
                      f"a rollout in {ep.env_id} (reset seed {int(env_seed)}"
                      + (f", target return {float(target_return):g})" if dt else ")"),
                      agent.config.n_actions if agent.discrete else None)
    one.metadata["reset_seed"] = int(env_seed)   # replayed to draw the full state beside a grid / pixel view
    asked = None
    if dt:
        asked = float(target_return) - np.concatenate([[0.0], np.cumsum(one.rewards[:-1], dtype=np.float64)])
    return one, (ep.attention[0, :T] if ep.attention is not None else None), asked
