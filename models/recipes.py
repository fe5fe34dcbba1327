"""The shipped agents (sample_data/agents/): how each is trained and evaluated. `make sample-agents`.

Each trains in under 10 minutes on 2 CPU cores and stays under 2 MB. Evaluation targets for DTs span
the training data's returns, so the README table shows return conditioning, not just the best case.
"""
from __future__ import annotations

DT_SMALL = {"hidden": 64, "n_layer": 3, "n_head": 1}
# planning horizon 10 of a 12-transition context: horizon 5 planned too short to swing the pendulum up
TT_SMALL = {"hidden": 64, "n_layer": 3, "n_head": 4, "n_bins": 100, "horizon": 10}

SAMPLE_AGENTS = {
    "cartpole-dt": dict(kind="dt", data="cartpole", context=20, steps=4000, hparams=DT_SMALL,
                        targets=[25, 100, 200, 300, 400, 500], episodes=16),
    "cartpole-mlp": dict(kind="mlp", data="cartpole", steps=4000, episodes=16),
    "masked-cartpole-dt-k20": dict(kind="dt", data="masked-cartpole", context=20, steps=4000, hparams=DT_SMALL,
                                   targets=[100, 300, 500], episodes=16),
    "masked-cartpole-dt-k1": dict(kind="dt", data="masked-cartpole", context=1, steps=4000, hparams=DT_SMALL,
                                  targets=[100, 300, 500], episodes=16),
    "masked-cartpole-gru": dict(kind="gru", data="masked-cartpole", steps=800, episodes=16),
    "pendulum-dt": dict(kind="dt", data="pendulum", context=20, steps=4000, hparams=DT_SMALL,
                        targets=[-1500, -1000, -600, -300, -150], episodes=16),
    "pendulum-tt": dict(kind="tt", data="pendulum", context=12, steps=3000, hparams=TT_SMALL, batch_size=64, lr=1e-3,
                        episodes=4),
    "pendulum-dynamics": dict(kind="dynamics", data="pendulum", steps=5000),
    "masked-pendulum-tt": dict(kind="tt", data="masked-pendulum", context=12, steps=3000, hparams=TT_SMALL, batch_size=64,
                               lr=1e-3, episodes=4),
    "masked-pendulum-dynamics": dict(kind="dynamics", data="masked-pendulum", steps=5000),
    "keydoor-dt": dict(kind="dt", data="keydoor", context=25, steps=3000, hparams=DT_SMALL, targets=[0, 1], episodes=100),
    "keydoor-mlp": dict(kind="mlp", data="keydoor", steps=3000, episodes=100),
}
