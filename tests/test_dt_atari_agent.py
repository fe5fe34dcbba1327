"""`cli.py convert-agent --from dt-atari FILE --n-head N`: the DT paper's Atari GPT (tests/dt_atari_reference.py, a
re-implementation of kzl's model_atari.py, saved as its bare state dict) -> a seqlens DT (models/dt_atari_agent.py)
whose logits equal the reference's within 1e-5: the conv state encoder, tanh embeddings, the window-start global
position and the local token positions. The parser and the reference come with the environments' branch
(models/dt_atari_import.py, tests/dt_atari_reference.py); without them this module skips."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import cli
from models import load_agent

ref = pytest.importorskip("dt_atari_reference")
pytest.importorskip("models.dt_atari_import")

SIZES = dict(vocab_size=6, block_size=3 * 4, n_layer=2, n_head=4, n_embd=32, max_timestep=40)


def run_cli(capsys, *args):
    rc = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    model = ref.randomize(ref.GPT(**SIZES), seed=3)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():   # the conv stack at std 1 / sqrt(fan-in): features O(1), not a saturated tanh of ~1e3
        for name, p in model.state_encoder.named_parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1
            p.copy_(torch.randn(p.shape, generator=g) * (fan_in ** -0.5 if p.dim() > 1 else 0.1))
    folder = tmp_path_factory.mktemp("dt_atari")
    path = folder / "Breakout_123.pth"
    torch.save(model.state_dict(), path)
    out = folder / "agent"
    assert cli.main(["convert-agent", str(path), "--n-head", "4", "--out", str(out), "--json"]) == 0   # detected
    return model, load_agent(out), path


def frames(B, T, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (B, T, 4, 84, 84), generator=g).float()   # raw pixels, as the Env stacks them


def test_config(converted):
    _, agent, _ = converted
    c, hp = agent.config, agent.config.hparams
    assert (c.obs_dim, c.n_actions, c.context_length, c.max_ep_len) == (4 * 84 * 84, 6, 4, 41)
    assert hp["state_encoder"] == "atari_conv" and hp["embed_tanh"] and hp["time_embedding"] == "window_start"
    assert hp["n_positions"] == 13 and c.state_std[0] == 255.0 and hp["hf_import"] == "dt-atari:Breakout_123.pth"
    assert agent.card()["attention"] == "causal over the last K steps (DT paper's Atari import)"


@pytest.mark.parametrize("L", [1, 2, 4])
def test_windows_equal_the_papers_gpt(converted, L):
    """A window of L <= K steps: the paper's forward with targets (3L tokens, positions from 0, the global row of the
    window's first step) against ours, both unpadded and left-padded to K with an attention mask."""
    model, agent, _ = converted
    B, K = 3, agent.context_length
    raw = frames(B, L, seed=L)
    g = torch.Generator().manual_seed(10 + L)
    actions = torch.randint(0, 6, (B, L), generator=g)
    rtg = torch.randint(0, 90, (B, L), generator=g).float()
    t0 = torch.randint(0, 41 - L, (B,), generator=g)
    with torch.no_grad():
        want = model(raw.reshape(B, L, -1) / 255, actions[..., None], targets=actions[..., None],
                     rtgs=rtg[..., None], timesteps=t0.view(B, 1, 1))
        steps = t0[:, None] + torch.arange(L)
        got = agent(agent.normalize(raw.reshape(B, L, -1)).reshape(B, L, 4, 84, 84), F.one_hot(actions, 6).float(),
                    rtg[..., None], steps).action_preds
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
        assert float(want.std()) > 0.05
        pad = K - L
        mask = (torch.arange(K) >= pad).long().expand(B, -1)
        junk = frames(B, pad, seed=99) / 255
        padded = agent(torch.cat([junk, agent.normalize(raw.reshape(B, L, -1)).reshape(B, L, 4, 84, 84)], 1),
                       F.one_hot(torch.cat([torch.zeros(B, pad, dtype=torch.long), actions], 1), 6).float(),
                       torch.cat([torch.full((B, pad), 7.0), rtg], 1)[..., None],
                       torch.cat([torch.zeros(B, pad, dtype=torch.long), steps], 1), mask).action_preds[:, pad:]
        torch.testing.assert_close(padded, want, atol=1e-5, rtol=0)
        if L > 1:   # the global position is the window's first step: another step's row changes the logits
            other = model(raw.reshape(B, L, -1) / 255, actions[..., None], targets=actions[..., None],
                          rtgs=rtg[..., None], timesteps=(t0 + 1).view(B, 1, 1))
            assert float((other - want).abs().max()) > 1e-3


def test_refusals(converted, tmp_path, capsys):
    _, _, path = converted
    rc, _, err = run_cli(capsys, "convert-agent", path, "--out", tmp_path / "o1")
    assert rc == 2 and "pass --n-head (the paper used 8)" in err
    rc, _, err = run_cli(capsys, "convert-agent", path, "--n-head", "5", "--out", tmp_path / "o2")
    assert rc == 2 and "--n-head 5" in err
    rc, _, err = run_cli(capsys, "convert-agent", tmp_path, "--from", "dt-atari", "--n-head", "4", "--out", tmp_path / "o3")
    assert rc == 2 and "is not a file" in err
    assert not any((tmp_path / f"o{i}").exists() for i in (1, 2, 3))
    rc, stdout, _ = run_cli(capsys, "convert-agent", path, "--n-head", "4", "--out", tmp_path / "o4", "--json")
    assert rc == 0 and json.loads(stdout)["from"] == "dt-atari"
    assert np.isfinite(load_agent(tmp_path / "o4").W_U("action").detach().numpy()).all()
