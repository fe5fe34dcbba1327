"""The one-step dynamics model given a TT's history (issue 24, item 2): the past slots it reads (training batches and
open-loop rollouts, against hand-built references), "no history" when called without it, and a rule only history
can predict (a position-only line: the next position is 2 x_t - x_{t-1})."""
import numpy as np
import pytest
import torch

from analysis.behaviour.predictions import default_context, error_by_horizon, open_loop
from models import load_agent, save_agent
from models.base import AgentConfig
from models.baselines import DynamicsModel
from models.train import train
from models.windows import TrainingData
from trajectories import Dataset


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _config(history: int, obs_dim: int = 2) -> AgentConfig:
    return AgentConfig(kind="dynamics", obs_dim=obs_dim, act_dim=1, discrete=False, state_mean=[0.0] * obs_dim,
                       state_std=[1.0] * obs_dim, action_low=[-1.0], action_high=[1.0],
                       hparams={"hidden": 16, "n_layer": 1, "history": history})


def _ramp(n_episodes: int = 3, length: int = 6) -> Dataset:
    """obs = [episode * 100 + step, -step], action = step / 10: every slot names where it came from."""
    obs, acts = [], []
    for e in range(n_episodes):
        for t in range(length):
            obs.append([e * 100 + t, -t])
            acts.append([t / 10])
    n = n_episodes * length
    return Dataset(np.array(obs, np.float32), np.array(acts, np.float32), np.zeros(n, np.float32), np.zeros(n, bool),
                   np.zeros(n, bool), np.arange(0, n, length))


def test_training_batches_carry_the_last_transitions_oldest_first():
    ds = _ramp()
    model = DynamicsModel(_config(3))
    data = TrainingData.build(ds, [0.0, 0.0], [1.0, 1.0], 1.0, 6)
    batch = model.sample_batch(data, 64, np.random.default_rng(0))
    past = batch["past"].numpy()
    assert past.shape == (len(batch["obs"]), 3, 2 + 1 + 1)
    for obs, p in zip(batch["obs"].numpy(), past):
        step = int(obs[0]) % 100
        for k in range(3):                       # slot k holds step - 3 + k
            s = step - 3 + k
            if s < 0:   # before the episode's first step: absent, zeros
                assert p[k].tolist() == [0.0, 0.0, 0.0, 0.0]
            else:
                np.testing.assert_allclose(p[k], [obs[0] - 3 + k, -s, s / 10, 1.0], atol=1e-6)


def test_no_past_reads_as_every_slot_absent_and_history_zero_reads_none():
    model = DynamicsModel(_config(2)).eval()
    obs, act = torch.randn(5, 2), torch.rand(5, 1) * 2 - 1
    absent = model.past_slots(torch.randn(5, 2, 2), torch.rand(5, 2, 1), torch.zeros(5, 2, dtype=torch.bool))
    assert torch.equal(model(obs, act)[0], model(obs, act, past=absent)[0])
    present = model.past_slots(torch.randn(5, 2, 2), torch.rand(5, 2, 1), torch.ones(5, 2, dtype=torch.bool))
    assert not torch.equal(model(obs, act)[0], model(obs, act, past=present)[0])
    with pytest.raises(ValueError, match="past must be"):
        model(obs, act, past=torch.zeros(5, 3, 4))
    assert DynamicsModel(_config(0)).net[0].in_features == 2 + 1
    assert model.net[0].in_features == 2 + 1 + 2 * 4


def test_rollout_feeds_its_predictions_into_the_history():
    """The batched rollout against a loop that builds each step's past by hand."""
    torch.manual_seed(0)
    model = DynamicsModel(_config(2)).eval()
    rng = np.random.default_rng(1)
    obs0, acts = rng.normal(size=(4, 2)), rng.uniform(-1, 1, size=(4, 5, 1))
    past_obs, past_acts = rng.normal(size=(4, 1, 2)), rng.uniform(-1, 1, size=(4, 1, 1))   # one logged transition
    pred, _ = model.rollout(obs0, acts, past_obs, past_acts)
    t = lambda x: torch.as_tensor(x, dtype=torch.float32)
    with torch.no_grad():
        hist_o, hist_a = [None, t(past_obs[:, 0])], [None, t(past_acts[:, 0])]
        s = t(obs0)
        for h in range(5):
            slots = []
            for o, a in zip(hist_o[-2:], hist_a[-2:]):
                if o is None:
                    slots.append(torch.zeros(4, 4))
                else:
                    slots.append(torch.cat([o, a, torch.ones(4, 1)], -1))
            nxt, _ = model(s, t(acts[:, h]), past=torch.stack(slots, 1))
            np.testing.assert_allclose(pred[:, h], nxt.numpy(), atol=1e-6)
            hist_o.append(s)
            hist_a.append(t(acts[:, h]))
            s = nxt


def _line(n_episodes: int = 40, length: int = 30, seed: int = 0) -> Dataset:
    """Position only, constant velocity per episode (x_{t+1} = 2 x_t - x_{t-1}): the action says nothing."""
    rng = np.random.default_rng(seed)
    obs = []
    for _ in range(n_episodes):
        x0, v = rng.uniform(-1, 1), rng.uniform(-0.3, 0.3)
        obs += [[x0 + v * t] for t in range(length)]
    n = n_episodes * length
    return Dataset(np.array(obs, np.float32), rng.uniform(-1, 1, (n, 1)).astype(np.float32), np.zeros(n, np.float32),
                   np.zeros(n, bool), np.zeros(n, bool), np.arange(0, n, length), source="line")


def test_history_predicts_what_one_step_cannot(tmp_path):
    ds = _line()
    hp = {"hidden": 64, "n_layer": 2}
    markov = train("dynamics", ds, steps=1500, seed=0, progress=False, hparams=hp)
    with_history = train("dynamics", ds, steps=1500, seed=0, progress=False, hparams={**hp, "history": 1})
    assert default_context(markov, 10) == 0 and default_context(with_history, 10) == 1
    held_out = _line(10, 30, seed=1)
    e_markov = error_by_horizon(markov, held_out, horizons=5, n_starts=100, seed=0)
    e_hist = error_by_horizon(with_history, held_out, horizons=5, n_starts=100, seed=0)
    assert e_hist.context == 1 and e_hist.reads_context and not e_markov.reads_context
    # velocities are uniform in [-0.3, 0.3] (|v| 0.15 per step on average): the position alone only hints at them
    assert e_markov.at(1) > 0.05 and e_hist.at(1) < e_markov.at(1) / 4, (e_markov.at(1), e_hist.at(1))
    # the checkpoint keeps its history, and so its predictions
    save_agent(with_history, tmp_path / "h")
    back = load_agent(tmp_path / "h")
    assert back.history == 1
    starts = np.array([5, 65, 200])
    np.testing.assert_array_equal(open_loop(back, held_out, starts, 4, 1)[0], open_loop(with_history, held_out, starts, 4, 1)[0])


def test_the_player_gives_a_history_model_its_logged_history():
    from analysis.media.player import _prediction
    from models.train import make_config
    from trajectories import load_dataset
    from trajectories.samples import SAMPLE_DIR

    torch.manual_seed(0)
    ds = load_dataset(SAMPLE_DIR / "pendulum.npz")
    model = DynamicsModel(make_config("dynamics", ds, hparams={"history": 2, "hidden": 16, "n_layer": 1})).eval()
    one = ds.select([0])
    steps = np.arange(one.n_transitions)
    p = _prediction(model, one, steps)
    assert "2 logged transitions of history" in p["label"]
    for t, c in ((7, 2), (1, 1), (0, 0)):   # early steps see what there is
        o, r = open_loop(model, one, np.array([t]), 1, c)
        np.testing.assert_allclose(p["predicted"][t, :-1], o[0, 0]) and np.testing.assert_allclose(p["predicted"][t, -1], r[0, 0])
    o, _ = open_loop(model, one, np.array([7]), 1, 0)
    assert not np.allclose(p["predicted"][7, :-1], o[0, 0])   # the history changed the prediction
