"""The one Agent interface every model implements, and its config (what a checkpoint stores).

Data flow: Dataset -> windows (models/windows.py) -> Agent.loss for training; Agent.start_rollout for
acting in (vector) environments; model-specific forward()s for analyses.
"""
from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field, fields
from typing import Mapping, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from .activations import ActivationRun, Intervention

# What `Agent.has(capability)` answers; each agent class lists the ones it has in `capabilities`.
CAPABILITIES = {
    "action": "predicts the action of a step from one forward pass (an action head: DT, MLP, GRU)",
    "return": "predicts the next return-to-go, R_{t+1} (DT's return head, read from the a_t token)",
    "value": "predicts a value from the history (DT's value head with the return hidden; TT's value tokens)",
    "state": "predicts the next state from one forward pass (DT's state head, untrained as in HF; TT; dynamics)",
    "attention": "has attention maps (forward(output_attentions=True) and blocks.*.attn.pattern)",
    "kv_cache": "acts or decodes with a key/value cache",
    "planning": "acts by searching over imagined futures (TT's beam search)",
    "dynamics": "predicts future states open-loop from logged actions (TT's predict_trajectory, "
                "DynamicsModel.rollout_open_loop)",
    "tokens": "works on discretised tokens (TT: encode_transitions, tokenize)",
    "return_conditioned": "is asked for a return-to-go (DT)",
    "recurrent": "carries a recurrent state over the whole episode (GRU)",
    "acts": "can act in an environment (start_rollout)",
    "step_tokens": "reads its history as return-to-go, state and action tokens per step in a window of its last K "
                   "steps (DT): analyses truncate, shift, patch and attribute those tokens",
    "markov": "acts on the current observation alone (MLP: a Markov policy, K = 1)",
    "q_values": "predicts action values Q(s, a) and a state value V(s) (value-based agents)",
    "partial_forward": "computes part of its forward exactly (DT: run_with_cache(last_state_only=True), run_suffix, "
                       "keys_values): analyses may run only what an output reads or a patch changes",
}


@dataclass
class AgentConfig:
    """Everything needed to rebuild and use an agent. Saved as config.json beside model.safetensors."""

    kind: str                       # "dt" | "tt" | "mlp" | "gru" | "dynamics"
    obs_dim: int
    act_dim: int                    # action vector size; 1 for discrete actions
    discrete: bool
    n_actions: int | None = None    # discrete only
    context_length: int = 1         # K: steps of history the model sees (TT: transitions)
    max_ep_len: int = 1000          # timestep embedding size; later timesteps are clipped (with a warning)
    rtg_scale: float = 1.0          # returns-to-go are divided by this, in training and evaluation alike
    state_mean: list[float] | None = None
    state_std: list[float] | None = None
    action_low: list[float] | None = None   # continuous only: the env's action bounds
    action_high: list[float] | None = None
    env_id: str | None = None
    hparams: dict = field(default_factory=dict)       # model-specific sizes (hidden, layers, heads, bins, ...)
    dataset: dict = field(default_factory=dict)       # name, fingerprint, n_episodes, return range of the training data
    training: dict = field(default_factory=dict)      # steps, seed, final losses, seconds
    evaluation: dict = field(default_factory=dict)    # {"results": [...]} as printed by `cli.py evaluate --json`

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AgentConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(unknown)}")
        return cls(**d)


@runtime_checkable
class Rollout(Protocol):
    """A batch of B environments acted in together, one episode each, all starting at t = 0: what
    `Agent.start_rollout` returns and every caller uses (models/rollout.py's loop, live play, the player, videos).
    DTRollout (models/dt_rollout.py), the MLP's and GRU's (models/baselines.py) and TTRollout (models/tt_planner.py)
    conform; tests/test_capabilities.py checks each shipped family's."""

    attention: np.ndarray | None   # after act(), with record_attention: [B, n_layer, n_head, K, 3]; else None

    def act(self, obs: np.ndarray) -> np.ndarray:
        """obs [B, obs_dim] (raw, unnormalised) -> actions [B] int64 (discrete) or [B, act_dim] float32."""

    def observe(self, rewards: np.ndarray) -> None:
        """The rewards [B] the last actions earned (DT lowers its return-to-go by them)."""

    def take(self, actions) -> None:
        """After act(): the envs took `actions` [B] (env units) instead (live play: the user acts); the next step
        reads them as the agent's own."""

    def policy(self) -> np.ndarray:
        """What the last act() proposed: action probabilities [B, n_actions] (discrete) or the action [B, act_dim]
        in env units (continuous)."""

    def value(self) -> np.ndarray | None:
        """[B] the value the agent predicts at the current step (raw return units); None without a value."""

    def skip_done(self, done: np.ndarray) -> None:
        """done [B] bool: those envs' episodes have ended; the rollout may stop computing for them."""


ROLLOUT_METHODS = ("act", "observe", "take", "policy", "value", "skip_done")


class RolloutBase:
    """Defaults for a Rollout: no recorded attention, no value, skip_done a no-op. take() and policy() say what
    the rollout lacks (each family's rollout defines them)."""

    attention = None

    def take(self, actions) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot take other actions.")

    def policy(self) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} proposes no policy.")

    def value(self) -> np.ndarray | None:
        return None

    def skip_done(self, done: np.ndarray) -> None:
        pass


class Agent(nn.Module):
    """Base class: normalisation from the config, the interface the trainer and evaluator use, and the
    interface analyses use: `has(capability)`, `activation_names()`, `run_with_cache(...)`."""

    capabilities: frozenset = frozenset()    # subclasses: the CAPABILITIES keys they have
    family: str = "an agent"                 # subclasses: how pages name the family ("a Decision Transformer")

    def __init__(self, config: AgentConfig):
        super().__init__()
        self.config = config
        mean = np.asarray(config.state_mean if config.state_mean is not None else np.zeros(config.obs_dim), np.float32)
        std = np.asarray(config.state_std if config.state_std is not None else np.ones(config.obs_dim), np.float32)
        # buffers, not parameters: saved with the weights, never trained
        self.register_buffer("state_mean", torch.from_numpy(mean), persistent=False)
        self.register_buffer("state_std", torch.from_numpy(np.maximum(std, 1e-6)), persistent=False)
        # continuous action bounds (default +-1); models act in [-1, 1] and map to the env's box
        low = np.asarray(config.action_low if config.action_low is not None else -np.ones(config.act_dim), np.float32)
        high = np.asarray(config.action_high if config.action_high is not None else np.ones(config.act_dim), np.float32)
        self.register_buffer("action_low", torch.from_numpy(low), persistent=False)
        self.register_buffer("action_high", torch.from_numpy(high), persistent=False)

    # ---- facts -----------------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return self.config.kind

    @property
    def obs_dim(self) -> int:
        return self.config.obs_dim

    @property
    def act_dim(self) -> int:
        return self.config.act_dim

    @property
    def discrete(self) -> bool:
        return self.config.discrete

    @property
    def context_length(self) -> int:
        return self.config.context_length

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.state_mean) / self.state_std

    def actions_to_unit(self, actions: torch.Tensor) -> torch.Tensor:
        """Env actions in [action_low, action_high] -> [-1, 1] (the tanh range models predict in)."""
        return (2 * (actions.float() - self.action_low) / (self.action_high - self.action_low) - 1).clamp(-1, 1)

    def unit_to_actions(self, unit: torch.Tensor) -> torch.Tensor:
        """[-1, 1] -> env actions in [action_low, action_high]."""
        return self.action_low + (unit.clamp(-1, 1) + 1) / 2 * (self.action_high - self.action_low)

    def card(self) -> dict:
        """What the dashboard's agent card shows (subclasses add model-specific lines)."""
        c = self.config
        return {"kind": c.kind, "obs_dim": c.obs_dim, "act_dim": c.act_dim, "discrete": c.discrete,
                "n_actions": c.n_actions, "context_length": c.context_length, "n_params": self.n_params,
                "env_id": c.env_id, "dataset": c.dataset.get("name"), "evaluation": c.evaluation.get("results")}

    def has(self, capability: str) -> bool:
        """Does this agent have `capability` (a key of models.base.CAPABILITIES)? Analyses branch on this,
        not on `kind`, wherever a capability is meant."""
        if capability not in CAPABILITIES:
            raise ValueError(f"unknown capability {capability!r} (known: {', '.join(CAPABILITIES)}).")
        return capability in self.capabilities

    # ---- named activations (models/activations.py) ---------------------------------------------------
    def activation_names(self) -> list[str]:
        """Every activation name of this agent, in the order the forward computes them (see the class
        docstring for what each is and its shape)."""
        raise NotImplementedError

    def run_with_cache(self, inputs, names=None, interventions: Mapping[str, Intervention] | None = None):
        """Run the normal forward on `inputs` (a dict of forward keyword arguments, a tuple of positional
        ones, or one tensor) -> (outputs, cache): cache maps each requested name (exact or `*` glob; None:
        all) to its tensor. interventions {name or glob: fn}: fn(tensor) -> tensor of the same shape
        replaces that activation for this call only (no hooks, no module state: thread-safe). Grad mode
        and train/eval mode are the caller's."""
        run = ActivationRun(self.activation_names(), names, interventions, what=f"{self.kind} agent")
        return self._call(inputs, activations=run), run.cache

    def _call(self, inputs, **kw):
        if isinstance(inputs, Mapping):
            return self(**inputs, **kw)
        if isinstance(inputs, (tuple, list)):
            return self(*inputs, **kw)
        return self(inputs, **kw)

    # ---- to implement ----------------------------------------------------------------------------
    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss on a batch from `sample_batch`, plus named floats for the progress bar."""
        raise NotImplementedError

    def sample_batch(self, data, batch_size: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """A training batch drawn from a models.windows.TrainingData (ARCHITECTURE.md, Conventions: how episodes are drawn)."""
        raise NotImplementedError

    def prepare_training(self, data):
        """The TrainingData `sample_batch` draws from during training, with whatever the family derives from it once
        (the TT's tokens); the trainer calls it once per run. Nothing kept on the agent."""
        return data

    def start_rollout(self, n_envs: int, target_returns: np.ndarray | None = None, sample: bool = True,
                      seed: int = 0) -> Rollout:
        """A Rollout for n_envs environments. target_returns [n_envs] in raw return units (DT only)."""
        raise NotImplementedError


def gpt2_init(module: nn.Module) -> None:
    """GPT-2's initialisation (normal 0.02, zero biases), for model.apply()."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)


@contextlib.contextmanager
def inference(module: nn.Module, grad: bool = False):
    """The one inference context: eval mode for a module in training (restored after) and no_grad, or with
    grad=True the caller's grad mode unchanged (attribution differentiates through the agent). Loaded agents already are in eval
    mode, and walking the module tree twice per step was 15% of a DT rollout (and a write to a shared agent)."""
    was = module.training
    if was:
        module.eval()
    try:
        with contextlib.nullcontext() if grad else torch.no_grad():
            yield
    finally:
        if was:
            module.train(True)
