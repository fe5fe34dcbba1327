"""Every default in one place: one dataclass per model family and one for training.

`resolve(kind, hparams)` fills a checkpoint's `hparams` with every default, so config.json says exactly what
the model was built with (a checkpoint that omits a key still loads: the default below applies). Models
read their sizes from a typed config made from the resolved dict (models/configs.py for DT and TT, these
dataclasses themselves for the MLP, GRU and dynamics model); nothing else holds a default.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass
class DTHparams:
    hidden: int = 64
    n_layer: int = 3
    n_head: int = 1
    n_inner: int | None = None            # MLP width; None -> 4 * hidden
    dropout: float = 0.1
    activation: str = "gelu_new"
    layer_norm_eps: float = 1e-5          # blocks and ln_f (embed_ln is always 1e-5, as in HF)
    rtg_dropout: float = 0.25             # share of training sequences whose RTG tokens are hidden (value head)
    action_weight: float = 1.0
    return_weight: float = 1.0
    value_weight: float = 1.0
    # steps per training window; None -> K. n_layer * K (the banded receptive field) trains every cached key on
    # its full band as the cached rollout uses it, at ~5x the cost per step on CPU.
    train_window: int | None = None
    action_tanh: bool = True              # continuous actions only
    # HF-compatibility switches (models/hf_import.py sets them; native models keep the defaults)
    banded: bool = True                   # False: plain causal attention over the whole input (HF semantics)
    hf_wpe: bool = False                  # True: add HF's wpe[0] to every token (HF passes position_ids = 0)
    scale_attn_weights: bool = True
    scale_attn_by_inverse_layer_idx: bool = False
    hf_import: str | None = None          # where an imported model came from (its value head is untrained)
    # Imported architectures (models/dti_import.py: DTI's MiniGrid DTs; the DT paper's Atari GPT). Native models keep
    # the defaults, which are today's model exactly; models/state_encoders.py and decision_transformer.py read them.
    obs_shape: list[int] | None = None    # the observation's own shape (prod = obs_dim); None: (obs_dim,)
    state_encoder: str = "linear"         # linear (flat vector, bias) | grid (DTI: no bias, flattened in the
                                          # observation's own order) | atari_conv (DT paper: 3 convs over 4x84x84)
    embed_tanh: bool = False              # tanh on the R, s and a embeddings (DT paper, Atari)
    time_embedding: str = "embedding"     # embedding (a table of absolute timesteps) | linear (DTI: Linear(1, H) of t)
                                          # | window_start (DT paper, Atari: the table at the window's first step,
                                          # added to every token)
    position_embedding: str = "none"      # none | tokens: a learned table over token positions in the window
    n_positions: int | None = None        # rows of the token position table; None -> 3K
    embed_ln: bool = True                 # LayerNorm over the tokens before the blocks (HF); DTI, Atari: none
    layer_norm: bool = True               # ln_1, ln_2 and ln_f; False: none (DTI's layer_norm None)
    gated_mlp: bool = False               # TransformerLens' gated MLP: act(x W_gate) * (x W_in) + b_in
    padding: str = "mask"                 # mask: left pads masked as keys | dti: pads are DTI's pad tokens (zero
                                          # state, pad action, the first real return-to-go, timestep 0), attended to


@dataclass
class TTHparams:
    n_bins: int = 100
    hidden: int = 128
    n_layer: int = 4
    n_head: int = 4
    dropout: float = 0.1
    discount: float = 0.99
    action_weight: float = 1.0            # 0 leaves action tokens out of the loss (ARCHITECTURE.md: better predictions)
    reward_weight: float = 1.0
    value_weight: float = 1.0
    beam_width: int = 32
    horizon: int = 5
    n_expand: int = 2
    action_proposal: str | None = None    # None: "model", or "uniform" when action_weight == 0
    action_cdf: float = 0.0               # nucleus proposals (reference 0.6); see trajectory_transformer.py
    obs_decoding: str = "argmax"
    value_decoding: str = "mean"
    value_quantile: float = 0.9


@dataclass
class MLPHparams:
    hidden: int = 128
    n_layer: int = 2
    dropout: float = 0.1


@dataclass
class GRUHparams:
    hidden: int = 64
    n_layer: int = 1
    max_train_len: int = 500              # longest training sequence (steps) per episode


@dataclass
class DynamicsHparams:
    hidden: int = 200
    n_layer: int = 3
    reward_scale: float = 1.0
    # logged transitions before the current one the model reads, concatenated (0: the Markov one-step model); issue 24
    # gives it a TT's context (K - 1) so history and sequence modelling are measured apart
    history: int = 0


@dataclass
class QHparams:
    """The Markov Q-network (kind "q", models/q_network.py) and what trains it: offline CQL (models/train.py) or online
    DQN (models/online_train.py). Q is learnt on rewards divided by the config's rtg_scale (the DT's scale: returns of
    order 1, whatever the environment's units); episode_values and the rollout's value() multiply it back."""
    hidden: int = 128
    n_layer: int = 2
    method: str = "cql"                   # cql (offline, models.train.train) | dqn (online, train_online)
    alpha: float = 1.0                    # CQL: weight of logsumexp_a Q(s, a) - Q(s, a_data); 0 is offline double DQN
    gamma: float = 0.99
    loss: str = "huber"                   # huber | mse, on the TD error in scaled units
    tau: float = 0.005                    # Polyak step of the target network per update; 1.0 with target_every: copies
    target_every: int = 1                 # updates between target updates (1: every update, Polyak by tau)
    double: bool = True                   # double DQN: the online net picks the next action, the target net values it
    # online DQN only (models/online_train.py): the gymnasium vector env, replay and epsilon-greedy schedule
    n_envs: int = 4
    buffer_size: int = 50_000
    learning_starts: int = 1_000          # env steps of uniform random actions before the first update
    train_every: int = 1                  # vector-env steps between updates
    eps_start: float = 1.0
    eps_end: float = 0.05
    eps_fraction: float = 0.2             # share of the steps over which epsilon falls linearly to eps_end


@dataclass
class DRQNHparams:
    """The recurrent Q-network (kind "drqn", models/drqn.py): a GRU over the episode's observations and previous
    actions, Q(h_t, .). Trained offline on sampled sub-sequences whose first `burn_in` steps only warm the GRU up from
    a zero state (no loss; Hausknecht & Stone 2015's random updates with R2D2's burn-in), CQL-regularised (offline)."""
    hidden: int = 64
    n_layer: int = 1
    method: str = "cql"
    alpha: float = 1.0
    gamma: float = 0.99
    loss: str = "huber"
    tau: float = 0.005
    target_every: int = 1
    double: bool = True
    seq_len: int = 40                     # steps with a loss per sampled sub-sequence
    burn_in: int = 20                     # steps before them that only carry the GRU state (0: start at the episode)


@dataclass
class CQHparams:
    """Continuous offline value learners (models/continuous_q.py): IQL (Kostrikov et al. 2021) or CQL(H) on SAC
    (Kumar et al. 2020). Sizes and coefficients as the papers' D4RL settings unless noted."""
    method: str = "iql"                   # iql | cql
    hidden: int = 256
    n_layer: int = 2
    gamma: float = 0.99
    tau: float = 0.005                    # Polyak rate of the target Q networks
    reward_scale: float | None = None     # rewards are divided by it in training; None: the data's largest |reward|
    expectile: float = 0.7                # IQL: V is this expectile of Q over the data's actions
    beta: float = 3.0                     # IQL: advantage-weighted regression's inverse temperature
    max_weight: float = 100.0             # IQL: cap on exp(beta * advantage)
    alpha: float = 5.0                    # CQL: weight of the penalty (fixed, no Lagrange dual)
    n_sampled: int = 10                   # CQL: actions sampled per state (uniform, pi(s), pi(s')) for the logsumexp


# Fitted from the data when a model is built (TrajectoryTransformer.for_dataset), not chosen: they pass
# through resolve() when present and get no default.
FITTED = {"tt": ("discretizer", "obs_quantization_floor")}

HPARAMS = {"dt": DTHparams, "tt": TTHparams, "mlp": MLPHparams, "gru": GRUHparams, "dynamics": DynamicsHparams,
           "q": QHparams, "drqn": DRQNHparams,
           "cq": CQHparams}


@dataclass
class TrainConfig:
    """One training run (models/train.py); the per-kind defaults are TRAIN_DEFAULTS."""

    steps: int = 2000
    seed: int = 0
    context_length: int = 1
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_max: int = 500                 # warm-up steps: min(warmup_max, steps // 10)
    grad_clip: float = 1.0


TRAIN_DEFAULTS = {
    "dt": TrainConfig(context_length=20, batch_size=64, lr=1e-3, grad_clip=0.25),
    "tt": TrainConfig(context_length=10, batch_size=32, lr=6e-4),
    "mlp": TrainConfig(context_length=1, batch_size=256, lr=1e-3),
    "gru": TrainConfig(context_length=1, batch_size=16, lr=2e-3),
    "dynamics": TrainConfig(context_length=1, batch_size=256, lr=1e-3),
    "q": TrainConfig(context_length=1, batch_size=256, lr=3e-4),
    "drqn": TrainConfig(context_length=1, batch_size=32, lr=1e-3),
    # actor, critics and value in one AdamW: their losses touch disjoint parameters (models/continuous_q.py)
    "cq": TrainConfig(context_length=1, batch_size=256, lr=3e-4, weight_decay=0.0, warmup_max=100, grad_clip=100.0),
}


def defaults(kind: str) -> dict:
    if kind not in HPARAMS:
        raise ValueError(f"unknown model '{kind}' (expected one of {', '.join(HPARAMS)}).")
    return asdict(HPARAMS[kind]())


def resolve(kind: str, hparams: dict | None) -> dict:
    """Every hyperparameter of `kind`: the given ones over the defaults. Unknown keys are a ValueError
    (a typo would otherwise train with the default silently)."""
    cls = HPARAMS.get(kind)
    if cls is None:
        raise ValueError(f"unknown model '{kind}' (expected one of {', '.join(HPARAMS)}).")
    hparams = dict(hparams or {})
    known = {f.name for f in fields(cls)} | set(FITTED.get(kind, ()))
    unknown = sorted(set(hparams) - known)
    if unknown:
        raise ValueError(f"unknown {kind} hyperparameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                         f"(known: {', '.join(sorted(known))}).")
    return {**asdict(cls()), **hparams}
