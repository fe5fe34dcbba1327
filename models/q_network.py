"""Kind "q": a Markov Q-network, Q(o_t, .) from the current observation alone (an MLP), trained offline with discrete
CQL (models/train.py, hparams method "cql") or online with DQN (models/online_train.py, method "dqn")."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from .activations import ActivationRun
from .base import AgentConfig
from .baselines import _mlp, run_hidden
from .hparams import QHparams, resolve
from .value_agents import ValueAgent, ValueTraining


class QNetwork(ValueAgent):
    """Q(o_t, a) for every discrete action a, in raw return units.

    Named activations (`run_with_cache(obs)`, models/activations.py), for normalised observations [..., obs_dim]:
      hidden.{i}   [..., hidden]     hidden layer i after its ReLU (i = 0..n_layer-1)
      head.q       [..., n_actions]  Q(o, a) in raw return units (the last Linear times rtg_scale): the forward's output
      head.v       [...]             max_a head.q, V(o) of the greedy policy (a readout: nothing after it reads it)
    """

    family = "a Q-network (CQL / DQN)"
    capabilities = frozenset({"q_values", "acts", "markov"})

    def __init__(self, config: AgentConfig):
        config = replace(config, hparams=resolve("q", config.hparams))   # every default into config.json
        super().__init__(config)
        self.cfg = h = QHparams(**config.hparams)
        self.net = _mlp(config.obs_dim, int(config.n_actions), h.hidden, h.n_layer)

    def forward(self, obs: torch.Tensor, activations: ActivationRun | None = None) -> torch.Tensor:
        """Normalised observations [..., obs_dim] -> Q [..., n_actions] (raw return units)."""
        run = activations
        if run is None:
            return self.net(obs) * self.q_scale
        q = run("head.q", run_hidden(self.net, obs, run) * self.q_scale)
        run("head.v", q.max(-1).values)
        return q

    def activation_names(self) -> list[str]:
        return [f"hidden.{i}" for i in range(self.cfg.n_layer)] + ["head.q", "head.v"]

    def q_values(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self(obs)

    def step_q(self, obs: torch.Tensor, state):
        return self(obs), state

    # ---- offline training (models/train.py's loop) ------------------------------------------------------------
    def sample_batch(self, train: ValueTraining, batch_size: int, rng: np.random.Generator) -> dict:
        """Transitions drawn uniformly over the data's usable steps (CQL's fixed point is defined by the data's
        distribution of transitions; the per-episode draw of the return-conditioned models does not apply), the TD
        target computed here with the run's target network, updated first for the optimiser's last step."""
        self.update_target(train.target, train.updates)
        train.updates += 1
        data = train.data
        t = train.valid[rng.integers(0, len(train.valid), size=batch_size)]
        nxt = np.minimum(t + 1, len(data.obs) - 1)   # a terminal's next step is never read (no bootstrap)
        obs, next_obs = torch.from_numpy(data.obs[t]), torch.from_numpy(data.obs[nxt])
        with torch.no_grad():   # training's own no-grad (inference() would flip the module's train mode per step)
            target = self.td_target(data.rewards[t], train.terminal[t], self(next_obs) / self.q_scale,
                                    train.target(next_obs) / self.q_scale)
        return {"obs": obs, "actions": torch.from_numpy(data.actions[t]), "target": target}

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        return self.td_batch_loss(self(batch["obs"]), batch["actions"], batch["target"])
