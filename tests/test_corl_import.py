"""`cli.py convert-agent`: CORL dt.py checkpoints and HF pytorch_model.bin directories -> seqlens checkpoints.

Equality with CORL's own model (tests/corl_reference.py) on every window length and along a rollout, and with
HF's DecisionTransformerModel for a .bin; pickles holding anything but tensors (and, for CORL, numpy float
arrays) refused without running; every malformed checkpoint one sentence, exit code 2 and no OUT written.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import cli
import corl_reference
from models import load_agent
from models.config_check import MAX_CONTEXT

SIZES = dict(state_dim=11, action_dim=3, seq_len=5, episode_len=50, embedding_dim=32, num_layers=2, num_heads=4,
             max_action=2.0)
REWARD_SCALE = 0.001




def corl_config(**over) -> dict:
    """config.yaml as pyrallis.dump writes CORL's TrainConfig (every field; tuples as lists)."""
    cfg = {"project": "CORL", "group": "DT-D4RL", "name": "DT-hopper-medium-v2-1a2b3c4d",
           "embedding_dim": SIZES["embedding_dim"], "num_layers": SIZES["num_layers"], "num_heads": SIZES["num_heads"],
           "seq_len": SIZES["seq_len"], "episode_len": SIZES["episode_len"], "attention_dropout": 0.1,
           "residual_dropout": 0.1, "embedding_dropout": 0.1, "max_action": SIZES["max_action"],
           "env_name": "hopper-medium-v2", "learning_rate": 0.0001, "betas": [0.9, 0.999], "weight_decay": 0.0001,
           "clip_grad": 0.25, "batch_size": 64, "update_steps": 100000, "warmup_steps": 10000,
           "reward_scale": REWARD_SCALE, "num_workers": 4, "target_returns": [3600.0, 1800.0], "eval_episodes": 10,
           "eval_every": 10000, "checkpoints_path": "checkpoints/DT-hopper-medium-v2-1a2b3c4d",
           "deterministic_torch": False, "train_seed": 10, "eval_seed": 42, "device": "cuda"}
    cfg.update(over)
    return cfg


def write_corl(path: Path, model_state: dict, mean, std, cfg: dict | None = None, config_text: str | None = None,
               checkpoint=None) -> Path:
    """A CORL checkpoints_path: config.yaml + dt_checkpoint.pt as dt.py saves them."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.yaml").write_text(config_text if config_text is not None else yaml.dump(cfg or corl_config()))
    obj = checkpoint if checkpoint is not None else {"model_state": model_state, "state_mean": mean, "state_std": std}
    torch.save(obj, path / "dt_checkpoint.pt")
    return path


@pytest.fixture(scope="module")
def corl_run(tmp_path_factory):
    """A reference CORL model with every weight randomised (its init zeroes biases and sets norms to 1), saved
    as CORL saves it: float32 statistics of shape (1, state_dim), std + 1e-6."""
    torch.manual_seed(0)
    ref = corl_reference.DecisionTransformer(**SIZES, attention_dropout=0.1, residual_dropout=0.1,
                                             embedding_dropout=0.1).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(1, SIZES["state_dim"])).astype(np.float32)
    std = (rng.uniform(0.5, 2.0, size=(1, SIZES["state_dim"])) + 1e-6).astype(np.float32)
    path = write_corl(tmp_path_factory.mktemp("corl") / "DT-hopper-medium-v2-1a2b3c4d", ref.state_dict(), mean, std)
    return ref, path, mean, std


def run_cli(capsys, *args):
    rc = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def converted(corl_run, tmp_path_factory):
    _, path, _, _ = corl_run
    out = tmp_path_factory.mktemp("converted") / "agent"
    assert cli.main(["convert-agent", str(path), "--out", str(out), "--json"]) == 0   # --from detected
    return out, load_agent(out)


def test_converted_agent_equals_corl_on_every_window_length(corl_run, converted):
    ref, _, mean, std = corl_run
    _, agent = converted
    c = agent.config
    assert (c.obs_dim, c.act_dim, c.context_length, c.max_ep_len) == (11, 3, 5, 55)
    assert c.rtg_scale == pytest.approx(1000.0) and c.action_low == [-2.0] * 3 and c.action_high == [2.0] * 3
    np.testing.assert_allclose(c.state_mean, mean[0], rtol=1e-6)
    np.testing.assert_allclose(c.state_std, std[0], rtol=1e-6)
    assert c.hparams["hf_import"].startswith("corl:") and agent.card()["hf_import"] == c.hparams["hf_import"]
    assert agent.card()["attention"] == "causal (CORL import)"
    assert c.hparams["activation"] == "gelu" and not c.hparams["banded"] and not c.hparams["hf_wpe"]
    assert c.env_id == "Hopper-v5" and c.dataset["name"] == "hopper-medium-v2"
    assert all(float(p.detach().abs().sum()) == 0 for n, p in agent.named_parameters()
               if n.startswith(("predict_return", "predict_state", "predict_value", "return_unknown")))
    g = torch.Generator().manual_seed(1)
    B = 4
    for L in range(1, SIZES["seq_len"] + 1):
        states = torch.randn(B, L, 11, generator=g)                      # normalised, as CORL feeds them
        actions = (torch.rand(B, L, 3, generator=g) * 2 - 1) * 2.0        # raw, within [-max_action, max_action]
        returns = torch.rand(B, L, generator=g) * 3.6                     # returns-to-go times reward_scale
        steps = torch.randint(0, 55, (B, L), generator=g)
        with torch.no_grad():
            want = ref(states, actions, returns, steps)
            pred = agent(states, agent.action_inputs(actions), returns[..., None], steps).action_preds
        got = agent.env_actions(pred)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
        assert float(want.std()) > 0.1   # outputs that depend on the inputs, or equality would prove little


@pytest.mark.parametrize("use_cache", [True, False])
def test_rollout_acts_as_corl_eval_rollout(corl_run, converted, use_cache):
    """CORL's eval_rollout: normalised states, its own raw actions fed back, returns-to-go = (target - sum of
    rewards) * reward_scale, absolute time steps, a forward over the last seq_len steps. Past seq_len steps
    too (12 > 5)."""
    ref, _, mean, std = corl_run
    _, agent = converted
    n_envs, steps, targets = 2, 12, np.array([3600.0, 1800.0], np.float32)
    ro = agent.start_rollout(n_envs, targets, use_cache=use_cache)
    rng = np.random.default_rng(5)
    S = torch.zeros(n_envs, steps, 11)
    A = torch.zeros(n_envs, steps, 3)
    R = torch.zeros(n_envs, steps)
    T = torch.arange(steps).expand(n_envs, -1)
    R[:, 0] = torch.as_tensor(targets * REWARD_SCALE)
    for t in range(steps):
        obs = (mean + std * rng.normal(size=(n_envs, 11))).astype(np.float32)
        S[:, t] = torch.as_tensor((obs - mean) / std)
        want = corl_reference.eval_actions(ref, S, A, R, T, t)
        got = ro.act(obs)
        np.testing.assert_allclose(got, want.numpy(), atol=1e-5)
        A[:, t] = want
        reward = rng.uniform(0, 5, size=n_envs).astype(np.float32)
        ro.observe(reward)
        if t + 1 < steps:
            R[:, t + 1] = R[:, t] - torch.as_tensor(reward) * REWARD_SCALE


def test_cli_json_overwrite_and_options(corl_run, tmp_path, capsys):
    _, path, _, _ = corl_run
    out = tmp_path / "agent"
    rc, stdout, _ = run_cli(capsys, "convert-agent", path, "--from", "corl", "--out", out, "--json")
    res = json.loads(stdout)
    assert rc == 0 and res["from"] == "corl" and res["env_id"] == "Hopper-v5" and res["context_length"] == 5
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    rc, _, err = run_cli(capsys, "convert-agent", path, "--out", out)
    assert rc == 2 and "pass --force" in err and len(err.strip().splitlines()) == 1
    rc, stdout, _ = run_cli(capsys, "convert-agent", path, "--out", out, "--force")
    assert rc == 0 and "from CORL" in stdout
    rc, _, err = run_cli(capsys, "convert-agent", path, "--out", tmp_path / "x", "--context", "8")
    assert rc == 2 and "apply to --from hf only" in err and not (tmp_path / "x").exists()
    rc, _, err = run_cli(capsys, "convert-agent", path, "--out", path)
    assert rc == 2 and len(err.strip().splitlines()) == 1
    rc, _, err = run_cli(capsys, "convert-agent", tmp_path, "--out", tmp_path / "y")
    assert rc == 2 and "cannot tell what" in err and not (tmp_path / "y").exists()


def test_env_name_that_does_not_fit_names_no_environment(corl_run, tmp_path, capsys):
    ref, _, mean, std = corl_run
    for env_name, note in (("halfcheetah-medium-v2", "maps to HalfCheetah-v5, whose observations"),
                           ("my-own-task", "is not a D4RL dataset name")):
        src = write_corl(tmp_path / env_name, ref.state_dict(), mean, std, corl_config(env_name=env_name))
        rc, stdout, err = run_cli(capsys, "convert-agent", src, "--out", tmp_path / f"out-{env_name}", "--json")
        assert rc == 0 and json.loads(stdout)["env_id"] is None and note in err


class _RunsAShellCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("payload", ["os.system", "function"])
def test_pickles_with_code_are_refused_unrun(corl_run, tmp_path, capsys, payload):
    ref, _, mean, std = corl_run
    marker = tmp_path / "ran"
    evil = _RunsAShellCommand(marker) if payload == "os.system" else np.mean
    src = write_corl(tmp_path / "src", None, None, None, checkpoint={"model_state": ref.state_dict(), "state_mean": mean,
                                                                     "state_std": std, "extra": evil})
    out = tmp_path / "out"
    rc, _, err = run_cli(capsys, "convert-agent", src, "--out", out)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "refused without running it" in err
    assert ("posix.system" if payload == "os.system" else "numpy.mean") in err
    assert not marker.exists() and not out.exists()


def _bad_cases(sd):
    """{label: (write_corl overrides, expected part of the one-line message)} for malformed CORL checkpoints."""
    missing = {k: v for k, v in sd.items() if k != "blocks.1.mlp.0.weight"}
    extra = {**sd, "blocks.2.norm1.weight": torch.ones(32)}
    shape = {**sd, "timestep_emb.weight": torch.zeros(60, 32)}
    ints = {**sd, "state_emb.weight": sd["state_emb.weight"].long()}
    return {
        "missing key": (dict(model_state=missing), "model_state lacks 'blocks.1.mlp.0.weight'"),
        "extra key": (dict(model_state=extra), "model_state has 'blocks.2.norm1.weight'"),
        "wrong shape": (dict(model_state=shape), "'timestep_emb.weight' has shape (60, 32), but config.yaml "
                                                 "(episode_len 50, seq_len 5, embedding_dim 32) implies (55, 32)"),
        "seq_len against weights": (dict(cfg=corl_config(seq_len=6, episode_len=49)),
                                    "'blocks.0.causal_mask' has shape (15, 15), but config.yaml (seq_len 6) implies (18, 18)"),
        "integer weights": (dict(model_state=ints), "'state_emb.weight' is torch.int64"),
        "not a mapping": (dict(config_text="- 1\n- 2\n"), "must hold a mapping of CORL's TrainConfig fields, got a list"),
        "empty config": (dict(config_text=""), "got nothing"),
        "bad yaml": (dict(config_text="seq_len: [5\n"), "config.yaml is not valid YAML"),
        "seq_len 0": (dict(cfg=corl_config(seq_len=0)), "field 'seq_len' must be at least 1, got 0"),
        "seq_len too long": (dict(cfg=corl_config(seq_len=MAX_CONTEXT + 1)), f"field 'seq_len' must be at most {MAX_CONTEXT}"),
        "seq_len text": (dict(cfg=corl_config(seq_len="five")), "field 'seq_len' must be an integer, got 'five'"),
        "heads": (dict(cfg=corl_config(num_heads=3)), "must be divisible by 'num_heads' (3)"),
        "no reward_scale": (dict(cfg={k: v for k, v in corl_config().items() if k != "reward_scale"}), "lacks 'reward_scale'"),
        "negative max_action": (dict(cfg=corl_config(max_action=-1.0)), "field 'max_action' must be positive"),
        "not a dict": (dict(checkpoint=[1, 2]), "holds a list; CORL's dt.py saves a dict"),
        "no statistics": (dict(checkpoint={"model_state": sd}), "lacks 'state_mean'"),
        "statistics shape": (dict(mean=np.zeros((2, 11), np.float32)), "state_mean has shape (2, 11)"),
        "statistics length": (dict(mean=np.zeros(7, np.float32), std=np.ones(7, np.float32)),
                              "'state_emb.weight' has shape (32, 11), but config.yaml (embedding_dim 32; state_dim 7 from "
                              "state_mean) implies (32, 7)"),
        "zero std": (dict(std=np.zeros((1, 11), np.float32)), "state_std must be positive"),
        "integer statistics": (dict(mean=np.zeros((1, 11), np.int64)), "holds a numpy array of dtype int64; only float32 and float64"),
    }


BAD = ["missing key", "extra key", "wrong shape", "seq_len against weights", "integer weights", "not a mapping",
       "empty config", "bad yaml", "seq_len 0", "seq_len too long", "seq_len text", "heads", "no reward_scale",
       "negative max_action", "not a dict", "no statistics", "statistics shape", "statistics length", "zero std",
       "integer statistics"]


@pytest.mark.parametrize("label", BAD)
def test_malformed_checkpoints_get_one_sentence(corl_run, tmp_path, capsys, label):
    ref, _, mean, std = corl_run
    sd = ref.state_dict()
    cases = _bad_cases(sd)
    assert sorted(cases) == sorted(BAD)
    over, expected = cases[label]
    kw = {"model_state": sd, "mean": mean, "std": std, **over}
    src = write_corl(tmp_path / "src", kw.pop("model_state"), kw.pop("mean"), kw.pop("std"), **kw)
    out = tmp_path / "out"
    rc, stdout, err = run_cli(capsys, "convert-agent", src, "--from", "corl", "--out", out, "--json")
    lines = err.strip().splitlines()
    assert rc == 2 and stdout == "" and len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected in lines[0], lines[0]
    assert not out.exists()


def test_legacy_and_compressed_pt_files_are_refused(corl_run, tmp_path, capsys):
    import zipfile

    ref, _, mean, std = corl_run
    src = write_corl(tmp_path / "src", ref.state_dict(), mean, std)
    torch.save({"model_state": ref.state_dict(), "state_mean": mean, "state_std": std}, src / "dt_checkpoint.pt",
               _use_new_zipfile_serialization=False)
    rc, _, err = run_cli(capsys, "convert-agent", src, "--out", tmp_path / "o1")
    assert rc == 2 and "not in torch.save's zip format" in err and not (tmp_path / "o1").exists()
    write_corl(src, ref.state_dict(), mean, std)
    with zipfile.ZipFile(src / "dt_checkpoint.pt") as zf:
        members = [(m, zf.read(m)) for m in zf.infolist()]
    with zipfile.ZipFile(src / "dt_checkpoint.pt", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for m, data in members:
            zf.writestr(m.filename, data)
    rc, _, err = run_cli(capsys, "convert-agent", src, "--out", tmp_path / "o2")
    assert rc == 2 and "compressed member" in err and not (tmp_path / "o2").exists()


# ---- Hugging Face pytorch_model.bin --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hf_bin(tmp_path_factory):
    """An HF DecisionTransformerModel directory with pytorch_model.bin (what save_pretrained wrote with
    safe_serialization=False: torch.save of the state dict; transformers >= 5 writes only safetensors)."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.DecisionTransformerConfig(state_dim=5, act_dim=3, hidden_size=32, n_layer=2, n_head=2,
                                                 max_ep_len=50, action_tanh=True, attn_implementation="eager")
    hf = transformers.DecisionTransformerModel(cfg).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    path = tmp_path_factory.mktemp("hf_bin")
    hf.config.save_pretrained(path)
    torch.save(hf.state_dict(), path / "pytorch_model.bin")
    return hf, path


def test_hf_pytorch_model_bin_converts_and_matches_hf(hf_bin, tmp_path, capsys):
    from models import AgentError

    hf, path = hf_bin
    assert not (path / "model.safetensors").exists()
    with pytest.raises(AgentError, match="convert-agent --from hf"):
        load_agent(path)
    out = tmp_path / "agent"
    rc, stdout, _ = run_cli(capsys, "convert-agent", path, "--out", out, "--context", 8, "--rtg-scale", 10, "--json")
    assert rc == 0 and json.loads(stdout)["from"] == "hf"
    agent = load_agent(out)
    assert agent.context_length == 8 and agent.config.rtg_scale == 10.0 and agent.config.hparams["hf_import"] == str(path)
    g = torch.Generator().manual_seed(2)
    B, L = 3, 8
    s, a = torch.randn(B, L, 5, generator=g), torch.rand(B, L, 3, generator=g) * 2 - 1
    R, t = torch.randn(B, L, 1, generator=g), torch.randint(0, 50, (B, L), generator=g)
    with torch.no_grad():
        want = hf(states=s, actions=a, returns_to_go=R, timesteps=t).action_preds
        got = agent(s, a, R, t).action_preds
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert float(want.std()) > 0.1


def test_hf_bin_with_code_or_wrong_shapes_is_refused(hf_bin, tmp_path, capsys):
    import shutil

    hf, path = hf_bin
    marker = tmp_path / "ran"
    evil = tmp_path / "evil"
    shutil.copytree(path, evil)
    torch.save({**hf.state_dict(), "x": _RunsAShellCommand(marker)}, evil / "pytorch_model.bin")
    rc, _, err = run_cli(capsys, "convert-agent", evil, "--from", "hf", "--out", tmp_path / "o1")
    assert rc == 2 and "posix.system" in err and "refused without running it" in err
    assert not marker.exists() and not (tmp_path / "o1").exists()
    # numpy arrays are allowed for CORL's statistics only: an HF .bin holds tensors
    torch.save({**hf.state_dict(), "x": np.zeros(3, np.float32)}, evil / "pytorch_model.bin")
    rc, _, err = run_cli(capsys, "convert-agent", evil, "--out", tmp_path / "o2")
    assert rc == 2 and "_reconstruct" in err and not (tmp_path / "o2").exists()
    torch.save({k: v for k, v in hf.state_dict().items() if k != "encoder.h.1.attn.c_attn.weight"}, evil / "pytorch_model.bin")
    rc, _, err = run_cli(capsys, "convert-agent", evil, "--out", tmp_path / "o3")
    assert rc == 2 and "lack tensor 'encoder.h.1.attn.c_attn.weight'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o3").exists()
