"""Predicted vs real: a model's open-loop predictions of a logged episode against what really happened.

- Trajectory Transformer: `predict_trajectory` from a logged start with the logged actions teacher-forced;
  next observations and rewards decoded from argmax bins (batched over many start steps at once). Its
  error cannot go below the quantization floor decode(encode(s)) (agent.cfg.obs_quantization_floor),
  which every result carries.
- Dynamics model (s_t, a_t -> s_{t+1}, r_t): rolled forward on its own predictions, so errors compound.
- Decision Transformer: return_preds (from the a_t token) predicts R_{t+1}; the implied reward is
  R_t - R_{t+1}. One step ahead only. Its state_preds head is untrained (as in HF) and is never shown as
  a prediction.

`error_by_horizon` is the number behind "which model predicts the future better": mean L2 between
predicted and logged observations (raw units) at each horizon, with bootstrap 95% CIs over start steps.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from models.errors import AgentError
from models.base import inference
from models.checks import check_dataset

from analysis.core.stats import bootstrap_ci

DT_STATE_NOTE = ("The Decision Transformer's state_preds head is untrained (as in Hugging Face's model): it is "
                 "not a prediction and is not shown. Its return head predicts R_{t+1}, one step ahead.")


# ---------------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------------
@dataclass
class PredictedVsReal:
    """One logged episode with a model's predictions beside it (NaN where the model predicts nothing)."""

    agent_kind: str
    episode: int
    start: int | None              # step the open-loop prediction starts from (None: one step ahead everywhere)
    horizon: int                   # steps predicted from `start` (1 for the DT's one-step return prediction)
    features: list[str]            # one per column of real / predicted
    steps: np.ndarray              # [T] step within the episode
    real: np.ndarray               # [T, F] logged values
    predicted: np.ndarray          # [T, F] predicted values (NaN where not predicted)
    obs_quantization_floor: float | None = None
    note: str = ""
    subtitle: str = ""             # a short clause for the figure's subtitle (what the model does not predict)

    @property
    def error(self) -> np.ndarray:
        """[T, F] predicted - real (NaN where not predicted)."""
        return self.predicted - self.real

    def to_frame(self) -> pd.DataFrame:
        T, F = self.real.shape
        return pd.DataFrame({
            "episode": self.episode, "step": np.repeat(self.steps, F), "feature": np.tile(self.features, T),
            "real": self.real.reshape(-1), "predicted": self.predicted.reshape(-1),
            "in_horizon": np.repeat(np.isfinite(self.predicted).any(axis=1), F),
        })


@dataclass
class HorizonError:
    """Open-loop observation error by horizon, averaged over random logged start steps."""

    model: str                     # a label (agent name or kind)
    kind: str
    horizons: np.ndarray           # [H] 1..H
    mean_l2: np.ndarray            # [H] mean L2 (raw observation units)
    ci_low: np.ndarray             # [H] bootstrap 95% CI of the mean
    ci_high: np.ndarray
    reward_mae: np.ndarray         # [H] mean |predicted - logged reward| at each step of the horizon
    errors: np.ndarray = field(repr=False, default=None)   # [n_starts, H] L2 per start
    starts: np.ndarray = field(repr=False, default=None)   # [n_starts] absolute dataset steps
    n_starts: int = 0
    seed: int = 0
    context: int = 0               # logged transitions before each start the model saw (TT)
    reads_context: bool = False    # the model reads `context` (a token model); a one-step model reads none
    obs_quantization_floor: float | None = None   # TT only: decode(encode(s)) error, the floor of mean_l2

    def at(self, h: int) -> float:
        return float(self.mean_l2[h - 1])

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"model": self.model, "kind": self.kind, "horizon": self.horizons,
                             "mean_l2": self.mean_l2, "ci_low": self.ci_low, "ci_high": self.ci_high,
                             "reward_mae": self.reward_mae, "n_starts": self.n_starts,
                             "obs_quantization_floor": self.obs_quantization_floor})


# ---------------------------------------------------------------------------------------------------
# batched open-loop predictions
# ---------------------------------------------------------------------------------------------------
def _actions(dataset, idx: np.ndarray) -> np.ndarray:
    """Logged actions at absolute steps idx [...] -> [..., act_dim] float64 (discrete: the index)."""
    a = dataset.actions[idx]
    return a.reshape(*idx.shape, -1).astype(np.float64)


def dynamics_rollout(model, obs0: np.ndarray, actions: np.ndarray, past_obs: np.ndarray | None = None,
                     past_actions: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Batched open loop of a dynamics model (`DynamicsModel.rollout`): raw obs0 [B, obs_dim], logged actions
    [B, H(, act_dim)], and for a model with history the logged transitions before the start (past_obs [B, c,
    obs_dim], past_actions [B, c(, ...)]) -> predicted raw observations [B, H, obs_dim] after each action and
    rewards [B, H]."""
    return model.rollout(obs0, actions, past_obs, past_actions)


def reads_history(agent) -> bool:
    """The model conditions on logged transitions before a start: a TT, or a dynamics model with history."""
    return agent.has("tokens") or int(getattr(agent.cfg, "history", 0) or 0) > 0


def open_loop(agent, dataset, starts: np.ndarray, horizon: int, context: int, tokens: np.ndarray | None = None):
    """Open-loop predictions of a TT or dynamics model from absolute steps `starts` (each with >= `context` logged
    transitions before it in its episode), the logged actions fed in: [B, H, obs_dim] observations, [B, H] rewards.
    A one-step model without history ignores `context`."""
    starts = np.asarray(starts, np.int64)
    H = int(horizon)
    if agent.has("tokens"):
        return tt_rollout(agent, dataset, starts, H, context, tokens)
    acts = dataset.actions[starts[:, None] + np.arange(H)[None, :]]
    c = min(int(context), int(getattr(agent.cfg, "history", 0) or 0))
    past = starts[:, None] - np.arange(c, 0, -1)[None, :]
    return dynamics_rollout(agent, dataset.observations[starts], acts, dataset.observations[past], dataset.actions[past])


def tt_rollout(agent, dataset, starts: np.ndarray, horizon: int, context: int, tokens: np.ndarray | None = None):
    """TT open-loop predictions from absolute steps `starts` (each with >= `context` logged transitions
    before it in its episode): [B, H, obs_dim] observations, [B, H] rewards. tokens: the dataset's
    transitions encoded once (agent.encode_transitions), reused across calls."""
    if tokens is None:
        tokens = agent.encode_transitions(dataset.observations, dataset.actions, dataset.rewards)
    o, D = agent.obs_dim, agent.D
    starts = np.asarray(starts, np.int64)
    past = tokens[starts[:, None] - np.arange(context, 0, -1)[None, :]].reshape(len(starts), context * D)
    ctx = np.concatenate([past, tokens[starts, :o]], axis=1)
    acts = _actions(dataset, starts[:, None] + np.arange(horizon)[None, :])
    pred = agent.predict_trajectory(ctx, acts)
    return pred.observations, pred.rewards


def _kind(agent) -> str:
    return agent.kind


def model_label(agent) -> str:
    """How figures name a predictor: its family, short ("TT", "DT", "dynamics model"). Not the data it was trained on:
    a figure names the data it was computed from (an upload, a local file), and "TT (pendulum.npz)" over an uploaded
    CSV read as if the figure were about pendulum.npz (issue 27, item 2)."""
    from models.loading import family_name

    kind = _kind(agent)
    if len(kind) <= 3:   # dt, tt, mlp, gru: the abbreviations the papers use
        return kind.upper()
    family = family_name(kind)
    return family.split(" ", 1)[1] if family.startswith(("a ", "an ")) else family


def _check_predictor(agent) -> str:
    kind = _kind(agent)
    if not agent.has("dynamics"):
        hint = " (its return head predicts one step ahead: see predicted_vs_real)" if agent.has("return") else ""
        raise AgentError(f"open-loop state predictions need a Trajectory Transformer or a dynamics model; "
                         f"a {kind} agent predicts no future states{hint}.")
    return kind


def default_context(agent, horizon: int) -> int:
    """Logged transitions a TT sees before a start. As when it plans, its window of K transitions holds the
    context and the whole horizon (K - H), so nothing is cropped and the KV cache stays exact; but never
    less than the context it plans with (K - its planning horizon): with H >= K the oldest transitions are
    cropped as the prediction grows, and a partially observed task (masked velocities) needs some history
    at the start. A dynamics model: the transitions it reads (its `history`; 0 for a one-step model)."""
    if not agent.has("planning"):
        return int(getattr(agent.cfg, "history", 0) or 0)   # a dynamics model: its history (0: one-step)
    K = agent.context_length
    planning = K - min(int(agent.cfg.horizon), K)
    return max(K - int(horizon), min(planning, K - 1), 0)


def error_by_horizon(agent, dataset, horizons: int = 20, n_starts: int = 256, seed: int = 0,
                     context: int | None = None, name: str | None = None, batch_size: int = 256) -> HorizonError:
    """Mean L2 (raw obs units) between open-loop predictions and the logged observations at each horizon
    1..`horizons`, from `n_starts` start steps drawn uniformly (seeded) among those with `context`
    logged transitions before them and `horizons` after. Works for TT and dynamics agents."""
    kind = _check_predictor(agent)
    check_dataset(agent, dataset)
    H = int(horizons)
    if H < 1:
        raise ValueError(f"horizons must be at least 1, got {horizons}.")
    tokens_model = agent.has("tokens")       # TT: predict_trajectory over tokens; else one-step forward()
    ctx = default_context(agent, H) if context is None else int(context)
    if tokens_model:
        ctx = min(ctx, max(agent.context_length - 1, 0))
    pos = dataset.timesteps
    remaining = np.repeat(dataset.episode_ends, dataset.episode_lengths) - np.arange(dataset.n_transitions) - 1
    valid = np.flatnonzero((pos >= ctx) & (remaining >= H))
    if not len(valid):
        raise AgentError(f"{dataset.source} has no step with {ctx} steps before it and {H} after it; "
                         "ask for a shorter horizon or context.")
    rng = np.random.default_rng(seed)
    starts = np.sort(rng.choice(valid, size=min(int(n_starts), len(valid)), replace=False))
    future = starts[:, None] + np.arange(1, H + 1)[None, :]
    tokens = agent.encode_transitions(dataset.observations, dataset.actions, dataset.rewards) if tokens_model else None
    obs_pred, rew_pred = [], []
    for i in range(0, len(starts), batch_size):
        s = starts[i:i + batch_size]
        o, r = open_loop(agent, dataset, s, H, ctx, tokens)
        obs_pred.append(o)
        rew_pred.append(r)
    obs_pred, rew_pred = np.concatenate(obs_pred), np.concatenate(rew_pred)
    errors = np.linalg.norm(obs_pred - dataset.observations[future].astype(np.float64), axis=-1)   # [B, H]
    reward_err = np.abs(rew_pred - dataset.rewards[future - 1].astype(np.float64))
    cis = np.array([bootstrap_ci(errors[:, h], seed=seed) for h in range(H)])
    floor = agent.cfg.obs_quantization_floor if tokens_model else None
    return HorizonError(model=name or model_label(agent),
                        kind=kind, horizons=np.arange(1, H + 1), mean_l2=errors.mean(0), ci_low=cis[:, 0],
                        ci_high=cis[:, 1], reward_mae=reward_err.mean(0), errors=errors, starts=starts,
                        n_starts=len(starts), seed=seed, context=ctx, reads_context=reads_history(agent),
                        obs_quantization_floor=None if floor is None else float(floor))


# ---------------------------------------------------------------------------------------------------
# one episode, predicted beside real
# ---------------------------------------------------------------------------------------------------
def dt_return_predictions(agent, dataset, episode: int) -> tuple[np.ndarray, np.ndarray]:
    """A DT's one-step return prediction at every step of an episode: predicted R_{t+1} and the implied
    reward R_t - R_{t+1} (raw units), from windows of the agent's context ending at each step. Through the
    one cache: the page asks again for every start step and horizon, which do not change it (a window per
    step of a 1,000-step episode is ~1-2 s for an HF hopper model)."""
    from analysis.core.cache import cached

    return cached("dt_return_predictions", lambda: _dt_return_predictions(agent, dataset, int(episode)), agent, dataset,
                  episode=int(episode))


def _dt_return_predictions(agent, dataset, episode: int) -> tuple[np.ndarray, np.ndarray]:
    from analysis.core.inputs import episode_steps, step_windows, training_data, window_rows

    data = training_data(agent, dataset)
    steps = episode_steps(data, int(episode))
    n = window_rows(agent, data, 512)   # frame stacks: a batch bounded by bytes
    with inference(agent):
        preds = []
        for i in range(0, len(steps), n):
            out = agent(**step_windows(agent, data, steps[i:i + n], embed=True))
            preds.append(out.return_preds[:, -1, 0].double().numpy() * agent.config.rtg_scale)
    next_return = np.concatenate(preds)
    return next_return, dataset.returns_to_go[steps].astype(np.float64) - next_return


def return_prediction_error(agent, dataset, n_steps: int = 2000, seed: int = 0) -> pd.DataFrame:
    """A DT's one-step return head over the dataset: mean |error| of the predicted R_{t+1} (raw units),
    which is also the error of the implied reward R_t - R_{t+1} since R_t is given, on `n_steps` steps
    drawn uniformly (seeded), with a bootstrap 95% CI, beside the mean |reward| for scale."""
    from analysis.core.inputs import step_windows, training_data, window_rows

    if not agent.has("return"):
        raise AgentError(f"the return head is a Decision Transformer's; got a {_kind(agent)} agent.")
    data = training_data(agent, dataset)
    n = dataset.n_transitions
    steps = np.sort(np.random.default_rng(seed).choice(n, size=min(int(n_steps), n), replace=False))
    b = window_rows(agent, data, 512)
    with inference(agent):
        pred = np.concatenate([agent(**step_windows(agent, data, steps[i:i + b], embed=True)).return_preds[:, -1, 0].double().numpy()
                               for i in range(0, len(steps), b)]) * agent.config.rtg_scale
    rtg = dataset.returns_to_go[steps].astype(np.float64)
    reward = dataset.rewards[steps].astype(np.float64)
    err = np.abs(pred - (rtg - reward))      # = |implied reward - logged reward|, as R_t is known exactly
    lo, hi = bootstrap_ci(err, seed=seed)
    return pd.DataFrame([{"quantity": "R(t+1) = implied reward", "mean_abs_error": float(err.mean()), "ci_low": lo,
                          "ci_high": hi, "mean_abs_reward": float(np.abs(reward).mean()),
                          "error_over_reward": float(err.mean() / max(np.abs(reward).mean(), 1e-12)), "n_steps": len(steps)}])


def predicted_vs_real(agent, dataset, episode: int = 0, start: int | None = None, horizon: int = 20,
                      context: int | None = None) -> PredictedVsReal:
    """Per-feature predicted vs logged values over one episode.

    TT / dynamics: observations and rewards predicted open-loop for `horizon` steps from step `start`
    (default: the first step with `context` logged transitions before it; see default_context),
    logged actions fed in.
    DT: predicted R_{t+1} and the implied reward at every step (one step ahead)."""
    check_dataset(agent, dataset)
    kind = _kind(agent)
    ep = dataset.episode(int(episode))
    T = len(ep)
    steps = np.arange(T)
    if agent.has("return"):       # one step ahead: predicted R_{t+1} and the implied reward
        next_return, implied = dt_return_predictions(agent, dataset, episode)
        real_next = np.append(ep.returns_to_go[1:], 0.0).astype(np.float64)
        real = np.stack([real_next, ep.rewards.astype(np.float64)], 1)
        return PredictedVsReal(kind, int(episode), None, 1, ["return-to-go R(t+1)", "reward"], steps, real,
                               np.stack([next_return, implied], 1), None, DT_STATE_NOTE,
                               subtitle="the DT's state_preds head is untrained and not shown")
    _check_predictor(agent)
    tokens_model = agent.has("tokens")
    ctx = default_context(agent, horizon) if context is None else int(context)
    if tokens_model:
        ctx = min(ctx, agent.context_length - 1)
    start = ctx if start is None else int(start)
    if T < 2:
        raise AgentError(f"episode {episode} has a single step: nothing to predict.")
    start = min(max(start, 0), T - 2)
    ctx = min(ctx, start)
    H = max(1, min(int(horizon), T - 1 - start))
    s = int(dataset.episode_starts[int(episode)]) + start
    obs, rew = open_loop(agent, dataset, np.array([s]), H, ctx)
    names = list(dataset.obs_names) + ["reward"]
    real = np.concatenate([ep.observations, ep.rewards[:, None]], 1).astype(np.float64)
    pred = np.full_like(real, np.nan)
    pred[start + 1:start + 1 + H, :-1] = obs[0]       # observation after each action
    pred[start:start + H, -1] = rew[0]                # reward of each action
    pred[start, :-1] = real[start, :-1]               # the prediction starts from the logged state
    floor = agent.cfg.obs_quantization_floor if tokens_model else None
    note = ("Open loop: the logged actions are fed in, the model's own predicted states are fed back"
            + (" (TT: argmax bins; quantization floor %.3g mean L2)." % floor if floor is not None else "."))
    return PredictedVsReal(kind, int(episode), start, H, names, steps, real, pred,
                           None if floor is None else float(floor), note)


# ---------------------------------------------------------------------------------------------------
# an imagined continuation, as an episode that can be drawn
# ---------------------------------------------------------------------------------------------------
class ImagineError(ValueError):
    """An imagined continuation that cannot be made (no state-predicting model, a step out of range); one sentence."""


@dataclass
class Imagined:
    """A model's open-loop continuation of a one-episode dataset from `start` for `horizon` steps."""

    result: PredictedVsReal        # predicted vs logged over the episode (NaN outside the horizon)
    episode: object                # the one-episode Dataset with the imagined states at start+1..start+horizon
    start: int
    horizon: int                   # may be shorter than asked: the episode ends first
    model: str                     # model_label(agent)

    @property
    def label(self) -> str:
        return (f"{self.model} imagined from step {self.start} for {self.horizon} steps (open loop, the logged "
                "actions fed in)")

    @property
    def error(self) -> np.ndarray:
        """[T] L2 between the imagined and the logged state (raw units); 0 at start, NaN outside the horizon."""
        err = np.linalg.norm(self.result.error[:, :-1], axis=1)
        err[np.arange(len(err)) > self.start + self.horizon] = np.nan
        return err


def imagined_continuation(agent, one, start: int, horizon: int, max_horizon: int | None = None) -> Imagined:
    """The open-loop continuation of a TT or dynamics model from step `start` of the one-episode dataset `one`
    (predicted_vs_real, the logged actions fed in), and the episode with the imagined states in place of the logged
    ones, which analysis.media.frames draws as frames. Shared by the episode player and the episode video."""
    from trajectories import Dataset

    if agent is None or not agent.has("dynamics"):
        if agent is not None and agent.has("return"):
            raise ImagineError("a Decision Transformer imagines no future states (its state head is untrained, as in "
                               "Hugging Face's model; its return head predicts only R(t+1), one step ahead).")
        raise ImagineError("an imagined continuation needs a Trajectory Transformer or a dynamics model" +
                           ("." if agent is None else f"; this {_kind(agent).upper()} agent predicts no future states."))
    T = one.n_transitions
    if T < 2:
        raise ImagineError("the episode has a single step: there is nothing to imagine after it.")
    if max_horizon is not None and not 1 <= int(horizon) <= int(max_horizon):
        raise ImagineError(f"the imagined horizon must be 1 to {max_horizon} steps, got {horizon}.")
    if int(horizon) < 1:
        raise ImagineError(f"the imagined horizon must be at least 1 step, got {horizon}.")
    if not 0 <= int(start) <= T - 2:
        raise ImagineError(f"the imagination must start at a step from 0 to {T - 2} (the episode has {T} steps), "
                           f"got {start}.")
    res = predicted_vs_real(agent, one, 0, start=int(start), horizon=int(horizon))
    s0, H = int(res.start), int(res.horizon)
    obs = one.observations.astype(np.float32)         # a copy: the episode's own arrays stay as they are
    obs[s0 + 1:s0 + H + 1] = res.predicted[s0 + 1:s0 + H + 1, :-1]
    dream = Dataset(obs, one.actions, one.rewards, one.terminated, one.truncated, np.array([0]), one.obs_names,
                    one.act_names, one.n_actions, one.env_id, f"the imagined continuation of {one.source}")
    return Imagined(res, dream, s0, H, model_label(agent))
