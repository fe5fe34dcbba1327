"""An environment for an agent that names none (issue 13, item 2): which environments fit, a variant that acts in
the chosen one without touching the shared agent, `--env` on the CLI, and the choice on Home and in the URL."""
import json
import subprocess
import sys
from dataclasses import replace

import pytest
from streamlit.testing.v1 import AppTest

from models import load_agent, save_agent
from models.env_choice import can_act, fitting_envs, with_env
from models.errors import AgentError

from conftest import ROOT, zip_agent_dir

AGENTS = ROOT / "sample_data" / "agents"


def _envless(name: str, directory):
    agent = load_agent(AGENTS / name)
    agent.config = replace(agent.config, env_id=None)
    save_agent(agent, directory)
    return directory


def test_fitting_environments_follow_the_spaces():
    assert fitting_envs(load_agent(AGENTS / "cartpole-dt")) == ["CartPole-v1"]
    assert fitting_envs(load_agent(AGENTS / "pendulum-dt")) == ["Pendulum-v1"]
    assert fitting_envs(load_agent(AGENTS / "masked-cartpole-gru")) == ["seqlens/MaskedCartPole-v1"]


def test_a_twin_acts_in_the_chosen_env_and_the_shared_agent_is_untouched(tmp_path):
    agent = load_agent(_envless("cartpole-dt", tmp_path / "a"))
    assert not can_act(agent)
    variant = with_env(agent, "CartPole-v1")
    assert variant.config.env_id == "CartPole-v1" and agent.config.env_id is None and can_act(variant)
    assert variant.embed_state.weight is agent.embed_state.weight        # weights shared, never copied
    with pytest.raises(AgentError, match="the environment Pendulum-v1 gives observations of shape"):
        with_env(agent, "Pendulum-v1")
    with pytest.raises(AgentError, match="names a module to import"):
        with_env(agent, "this:CartPole-v1")


def test_cli_evaluate_takes_env(tmp_path):
    path = _envless("cartpole-mlp", tmp_path / "mlp")
    cmd = [sys.executable, "cli.py", "evaluate", "--agent", str(path), "--episodes", "2", "--json"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "does not name an environment" in r.stderr and "--env" in r.stderr
    r = subprocess.run(cmd + ["--env", "CartPole-v1"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)["results"][0]
    assert res["episodes"] == 2 and 8 <= res["mean_return"] <= 500
    r = subprocess.run(cmd + ["--env", "Pendulum-v1"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "expects shape (4,)" in r.stderr
    dt = _envless("cartpole-dt", tmp_path / "dt")
    out = tmp_path / "sweep.csv"
    r = subprocess.run([sys.executable, "cli.py", "export", "--agent", str(dt), "--data", "sample_data/datasets/cartpole.npz",
                        "--figure", "rtg_sweep_returns", "--param", "targets=[100,500]", "--param", "episodes=1",
                        "--env", "CartPole-v1", "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert out.read_text().count("\n") >= 3                           # a header and a row per target


def test_home_offers_the_fitting_envs_and_the_sweep_runs_in_the_chosen_one(tmp_path):
    path = _envless("cartpole-dt", tmp_path / "dt")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.file_uploader(key="upload_agent").upload("envless.zip", zip_agent_dir(path), "application/zip").run()
    assert not at.exception and at.session_state["agent"] == "upload: envless.zip"
    env = at.selectbox(key="env_select")
    assert env.options == ["none (offline analyses only)", "CartPole-v1"]
    assert env.value == "CartPole-v1"               # the dataset's environment fits: chosen by default
    assert at.query_params["env"] in ("CartPole-v1", ["CartPole-v1"])
    at.session_state["sweep_episodes"] = 1
    at.session_state["sweep_targets"] = "100, 500"
    at.switch_page("views/3_Return_conditioning.py").run()
    assert not at.exception, at.exception
    assert any("CartPole-v1" in c.proto.spec for c in at.get("plotly_chart"))


# ---- normalisation and return scale (issue 13, item 3) ---------------------------------------------------------
def _statless(name: str, directory):
    """The agent without its state statistics, as a Hugging Face import arrives."""
    agent = load_agent(AGENTS / name)
    agent.config = replace(agent.config, state_mean=None, state_std=None)
    save_agent(agent, directory)
    return directory


def test_statistics_from_the_training_data_give_back_the_trained_agent_exactly(tmp_path):
    import numpy as np
    import torch

    from analysis.core.inputs import step_windows, training_data
    from models.env_choice import dataset_statistics, with_inputs
    from trajectories import load_dataset

    original = load_agent(AGENTS / "cartpole-dt")
    bare = load_agent(_statless("cartpole-dt", tmp_path / "bare"))
    ds = load_dataset(ROOT / "sample_data/datasets/cartpole.npz")
    mean, std = dataset_statistics(ds)
    assert mean == original.config.state_mean and std == original.config.state_std   # what training stored
    variant = with_inputs(bare, mean, std, source="cartpole.npz")
    assert torch.equal(bare.state_mean, torch.zeros(4)) and bare.config.state_mean is None   # untouched
    steps = np.arange(0, 3000, 97)
    outs = []
    for agent in (original, variant, bare):
        inputs = step_windows(agent, training_data(agent, ds), steps)
        with torch.no_grad():
            outs.append(agent(**inputs).action_preds[:, -1])
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])
    with pytest.raises(AgentError, match="3 values but the agent reads 4"):
        with_inputs(bare, *dataset_statistics(load_dataset(ROOT / "sample_data/datasets/pendulum.npz")))
    assert with_inputs(original, rtg_scale=250.0).config.rtg_scale == 250.0 and original.config.rtg_scale == 500.0


def test_cli_normalize_from_and_rtg_scale(tmp_path):
    bare = _statless("cartpole-dt", tmp_path / "bare")
    base = [sys.executable, "cli.py", "evaluate", "--target-returns", "500", "--episodes", "4", "--json"]
    want = subprocess.run(base + ["--agent", str(AGENTS / "cartpole-dt")], cwd=ROOT, capture_output=True, text=True)
    got = subprocess.run(base + ["--agent", str(bare), "--normalize-from", "sample_data/datasets/cartpole.npz"],
                         cwd=ROOT, capture_output=True, text=True)
    assert want.returncode == got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["results"] == json.loads(want.stdout)["results"]
    bad = subprocess.run(base + ["--agent", str(bare), "--normalize-from", "sample_data/datasets/pendulum.npz"],
                         cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "agent reads 4" in bad.stderr
    bad = subprocess.run(base + ["--agent", str(bare), "--rtg-scale", "-1"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "positive finite" in bad.stderr


def test_pages_say_which_statistics_are_in_use(tmp_path):
    path = _statless("cartpole-dt", tmp_path / "bare")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.file_uploader(key="upload_agent").upload("bare.zip", zip_agent_dir(path), "application/zip").run()
    assert not at.exception
    assert at.selectbox(key="norm_select").value == "cartpole"      # the selected dataset, by default
    at.switch_page("views/2_Attention.py").run()
    assert not at.exception, at.exception
    assert any("state normalisation from cartpole; return-to-go scale 500" in c.value for c in at.caption)


def test_twins_record_the_choices_that_made_them():
    """What bundles turn into remake options (analysis/publish/export.input_flags): every variant knows its choices, a variant of
    a variant keeps its parent's, a later normalisation choice replaces an earlier one, and nothing reaches the config
    or the shared agent."""
    from models.env_choice import input_choices, with_inputs, without_normalization

    agent = load_agent(AGENTS / "cartpole-dt")
    raw = without_normalization(with_env(agent, "cartpole"))
    assert input_choices(raw) == {"env": "CartPole-v1", "raw_inputs": True} and raw.config.state_mean is None
    again = with_inputs(raw, [0.0] * 4, [1.0] * 4, rtg_scale=100.0, source="cartpole", path="data/cartpole.npz")
    assert input_choices(again) == {"env": "CartPole-v1", "normalize_from": "cartpole",
                                    "normalize_path": "data/cartpole.npz", "rtg_scale": 100.0}
    assert input_choices(without_normalization(again)) == {"env": "CartPole-v1", "rtg_scale": 100.0, "raw_inputs": True}
    assert input_choices(agent) == {} and "input_choices" not in json.dumps(again.config.to_dict())


# ---- families: image and grid agents get Atari and MiniGrid environments, vector agents never do -----------------
class _ShapedAgent:
    """What the environment chooser reads of an agent: its config (obs_shape in hparams) and obs_dim."""

    def __init__(self, shape, n_actions=7, discrete=True):
        from math import prod

        from models.base import AgentConfig

        self.obs_dim = prod(shape)
        self.config = AgentConfig(kind="dt", obs_dim=self.obs_dim, act_dim=1 if discrete else 2, discrete=discrete,
                                  n_actions=n_actions if discrete else None,
                                  hparams={"obs_shape": list(shape)} if len(shape) > 1 else {})
        self.notes = []


def test_families_offer_atari_to_frame_stacks_and_minigrid_to_grid_views():
    from models.env_choice import GRID_CANDIDATES, env_family, grid_wrapping

    atari = ["seqlens/DTAtari-Breakout-v0", "seqlens/DTAtari-Qbert-v0", "seqlens/DTAtari-Pong-v0", "seqlens/DTAtari-Seaquest-v0"]
    assert fitting_envs(_ShapedAgent((4, 84, 84), n_actions=4)) == atari
    # Breakout has 4 actions: an agent choosing among 6 cannot act there
    assert fitting_envs(_ShapedAgent((4, 84, 84), n_actions=6)) == atari[1:]
    seven = ["MiniGrid-MemoryS7FixedStart-v0", "MiniGrid-MemoryS7RandomDirection-v0", "CrossingMultiEnv-v0",
             "MultiRoomMultiEnv-v0"]
    assert fitting_envs(_ShapedAgent((7, 7, 20), n_actions=7)) == seven   # the Dynamic-Obstacles tasks have 3 actions
    assert fitting_envs(_ShapedAgent((7, 7, 3), n_actions=3)) == list(GRID_CANDIDATES)
    assert env_family("CrossingMultiEnv-v0") == env_family("MiniGrid-Empty-5x5-v0") == "MiniGrid"
    assert env_family("ALE/Pong-v5") == "Atari" and env_family("Hopper-v5") == "vector"
    assert grid_wrapping(_ShapedAgent((5, 5, 20))) == {"view_size": 5, "one_hot_obs": True}
    assert fitting_envs(_ShapedAgent((3, 64, 64))) == []
    vector = fitting_envs(_ShapedAgent((4,), n_actions=2))
    assert vector == ["CartPole-v1"] and not any(e.startswith(("MiniGrid", "seqlens/DTAtari")) for e in vector)


def test_another_familys_id_is_refused_with_one_sentence(tmp_path):
    grid, atari = _ShapedAgent((7, 7, 20)), _ShapedAgent((4, 84, 84), n_actions=4)
    cartpole = load_agent(_envless("cartpole-dt", tmp_path / "a"))
    cases = [
        (grid, "breakout", "seqlens/DTAtari-Breakout-v0 is an Atari environment but the agent reads 7x7x20 MiniGrid views, "
                           "so it can act only in a MiniGrid environment (such as MiniGrid-MemoryS7FixedStart-v0)."),
        (atari, "MiniGrid-MemoryS7FixedStart-v0", "MiniGrid-MemoryS7FixedStart-v0 is a MiniGrid environment but the agent "
                                                  "reads 4x84x84 Atari frame stacks, so it can act only in an Atari environment"),
        (cartpole, "seqlens/DTAtari-Pong-v0", "seqlens/DTAtari-Pong-v0 is an Atari environment but the agent reads vectors "
                                              "of 4 values, so it can act only in an environment with vector observations"),
        (atari, "CartPole-v1", "CartPole-v1 is an environment with vector observations but the agent reads 4x84x84"),
        (_ShapedAgent((3, 64, 64)), "breakout", "which no environment seqlens makes gives."),
        (atari, "seqlens/DTAtari-Tetris-v0", "is not registered with gymnasium here"),
        (grid, "MiniGrid-Dynamic-Obstacles-8x8-v0", "has 3 discrete actions but the agent chooses among 7 discrete actions."),
    ]
    for agent, env_id, sentence in cases:
        with pytest.raises(AgentError) as err:
            with_env(agent, env_id)
        text = str(err.value)
        assert sentence in text and "\n" not in text and text.count(". ") == 0, text


def test_an_image_agents_variant_and_ids_naming_modules():
    atari = _ShapedAgent((4, 84, 84), n_actions=4)
    variant = with_env(atari, "breakout")
    assert variant.config.env_id == "seqlens/DTAtari-Breakout-v0" and atari.config.env_id is None and can_act(variant)
    for agent in (atari, _ShapedAgent((7, 7, 3))):
        with pytest.raises(AgentError, match="names a module to import"):
            with_env(agent, "this:Breakout")
    assert "this" not in sys.modules   # the module an id names is never imported
