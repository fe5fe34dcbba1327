"""Every default in one place (models/hparams.py), resolved into config.json."""
import json
from dataclasses import asdict, fields

import pytest

from models import load_agent, save_agent
from models.hparams import HPARAMS, TRAIN_DEFAULTS, DTHparams, resolve
from models.train import make_config

from conftest import ROOT

AGENTS = ROOT / "sample_data" / "agents"


def test_resolve_fills_every_default_and_refuses_typos():
    assert resolve("mlp", {"hidden": 32}) == {"hidden": 32, "n_layer": 2, "dropout": 0.1}
    assert resolve("dt", None) == asdict(DTHparams())
    with pytest.raises(ValueError, match="unknown gru hyperparameter hiden"):
        resolve("gru", {"hiden": 8})
    assert resolve("tt", {"discretizer": {"x": 1}})["discretizer"] == {"x": 1}   # fitted: passed through
    assert "discretizer" not in resolve("tt", {})


@pytest.mark.parametrize("name", ["cartpole-mlp", "masked-cartpole-gru", "pendulum-dynamics", "cartpole-dt", "pendulum-tt"])
def test_a_loaded_agent_carries_every_hyperparameter_and_saves_them(name, tmp_path):
    stored = json.loads((AGENTS / name / "config.json").read_text())["hparams"]
    agent = load_agent(AGENTS / name)
    kind = agent.kind
    expected = {f.name for f in fields(HPARAMS[kind])}
    assert expected <= set(agent.config.hparams)
    assert all(agent.config.hparams[k] == v for k, v in stored.items())   # what the file said still holds
    save_agent(agent, tmp_path)
    assert expected <= set(json.loads((tmp_path / "config.json").read_text())["hparams"])


def test_make_config_writes_resolved_hparams(tiny_discrete):
    cfg = make_config("gru", tiny_discrete, hparams={"hidden": 16})
    assert cfg.hparams == {"hidden": 16, "n_layer": 1, "max_train_len": 500}
    assert cfg.context_length == TRAIN_DEFAULTS["gru"].context_length
    assert TRAIN_DEFAULTS["dt"].grad_clip == 0.25 and TRAIN_DEFAULTS["mlp"].grad_clip == 1.0
