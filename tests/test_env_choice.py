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
