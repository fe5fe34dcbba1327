"""Causal views (analysis/interp/patching.py, analysis/interp/dla.py): known answers.

Patching a whole layer's residual stream restores the clean output and patching nothing leaves the corrupted one;
the batched grid (cone and no-op cells left out, only the blocks and tokens a patch changes: run_suffix) equals one
forward per cell, and run_suffix equals the full forward with the same intervention; direct
logit attribution's parts sum to the output; the logit lens's last row is the model's output; the Key-to-Door pair
really differs in key pickup; bad input is one sentence; the CLI exports the grid."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from analysis.interp.dla import direct_logit_attribution, logit_lens
from analysis.core.inputs import step_windows, training_data
from analysis.interp.patching import PatchPair, key_door_pair, make_pair, patcher, token_labels
from models import load_agent
from models.base import AgentConfig
from models.decision_transformer import DecisionTransformer
from test_activations import spread
from trajectories import Dataset, load_dataset

ROOT = Path(__file__).resolve().parent.parent
AGENTS, DATA = ROOT / "sample_data/agents", ROOT / "sample_data/datasets"




def make_dt(discrete=True, banded=True, K=3, n_head=2, **hp):
    torch.manual_seed(0)
    cfg = AgentConfig(kind="dt", obs_dim=3, act_dim=1 if discrete else 2, discrete=discrete,
                      n_actions=3 if discrete else None, context_length=K, max_ep_len=100, rtg_scale=10.0,
                      hparams={"hidden": 32, "n_layer": 3, "n_head": n_head, "banded": banded, **hp})
    return spread(DecisionTransformer(cfg))


def tiny_data(discrete=True, lengths=(14, 12, 14, 6), seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    n = sum(lengths)
    ends = np.cumsum(lengths)
    terminated = np.zeros(n, bool)
    terminated[ends - 1] = True
    actions = rng.integers(0, 3, n) if discrete else rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    return Dataset(rng.normal(size=(n, 3)).astype(np.float32), actions, rng.normal(size=n).astype(np.float32) * 3,
                   terminated, np.zeros(n, bool), np.concatenate([[0], ends[:-1]]), n_actions=3 if discrete else None)


@pytest.fixture(scope="module")
def disc():
    return make_dt(), tiny_data()


@pytest.fixture(scope="module")
def cont():
    return make_dt(discrete=False), tiny_data(discrete=False)


@pytest.fixture(scope="module")
def keydoor():
    return load_agent(AGENTS / "keydoor-dt"), load_dataset(DATA / "keydoor.npz")


OUTPUTS = [("action", "logit"), ("action", "prob"), ("value", "logit"), ("return", "logit")]


def _all(p, name):
    shape = p.clean_cache[name].shape[1:-1]
    T = p.tokens(p.pair.steps)
    return torch.ones((1, T) + tuple(shape[1:]), dtype=torch.bool)


# ---- patching ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("output,metric", OUTPUTS)
def test_patching_a_whole_layer_gives_clean_and_nothing_gives_corrupted(disc, output, metric):
    agent, ds = disc
    pair = make_pair(agent, ds, episode=0, step=10, corrupt="episode", corrupt_episode=2)
    assert pair.steps == 9                                   # the receptive field: 3 layers x K=3
    p = patcher(agent, pair, output, metric=metric)
    assert abs(p.clean - p.corrupted) > 1e-3                 # the spread model tells the inputs apart
    for name in p.resid_names:
        everything = p.patched({name: _all(p, name)})[0]
        nothing = p.patched({name: torch.zeros_like(_all(p, name))})[0]
        assert everything == pytest.approx(p.clean, abs=1e-5), name
        assert nothing == pytest.approx(p.corrupted, abs=1e-5), name
    for r, name in enumerate(p.resid_names):                 # the shorter windows the batched grid runs
        steps = p.reach_steps(r)
        assert steps < pair.steps
        assert p.patched({name: _all(p, name)}, steps)[0] == pytest.approx(p.clean, abs=1e-5), name
        assert p.patched({name: torch.zeros_like(_all(p, name))}, steps)[0] == pytest.approx(p.corrupted, abs=1e-5)
    # every part the stream is made of: the embedding, every head, every MLP
    parts = ["blocks.0.resid_pre"] + [f"blocks.{i}.{n}" for i in range(agent.n_layer) for n in ("attn.head_out", "mlp.out")]
    assert p.patched({n: _all(p, n) for n in parts})[0] == pytest.approx(p.clean, abs=1e-5)
    assert p.patched({n: _all(p, n) for n in parts[1:]})[0] != pytest.approx(p.clean, abs=1e-3)   # the embedding matters


@pytest.mark.parametrize("output,metric", OUTPUTS)
def test_batched_position_grid_equals_one_forward_per_cell(disc, output, metric):
    agent, ds = disc
    pair = make_pair(agent, ds, episode=0, step=10, corrupt="episode", corrupt_episode=2)
    p = patcher(agent, pair, output, metric=metric)
    fast, naive = p.positions(token_budget=100), p.positions_naive()
    assert fast.patched.shape == (agent.n_layer + 1, 26 if output != "return" else 27)   # tokens up to s_t / a_t
    np.testing.assert_allclose(fast.patched, naive.patched, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fast.effect, naive.effect, rtol=1e-4, atol=1e-4)
    assert fast.forwards > agent.n_layer + 1                 # the token budget cut the batch
    assert not fast.computed[0, :6].any() and fast.computed[0, 6:].any()   # the oldest 2 steps are beyond the band's reach
    assert fast.computed[-1].sum() == 1                      # the last resid_post: only the output token
    assert fast.effect[-1, -1] == pytest.approx(1.0, abs=1e-5)
    assert 0.05 < np.abs(fast.effect[:-1]).max()             # the map is not trivial


@pytest.mark.parametrize("kind", ["continuous", "unbanded", "rtg"])
def test_batched_grid_equals_naive_for_other_models_and_corruptions(disc, cont, kind):
    agent, ds = cont if kind == "continuous" else (make_dt(banded=False), disc[1]) if kind == "unbanded" else disc
    corrupt = "rtg" if kind == "rtg" else "episode"
    pair = make_pair(agent, ds, episode=2, step=9, corrupt=corrupt, rtg_shift=7.0 if corrupt == "rtg" else None)
    for output in ("action", "return"):
        p = patcher(agent, pair, output, action=1 if kind == "continuous" else None)
        fast, naive = p.positions(), p.positions_naive()
        np.testing.assert_allclose(fast.patched, naive.patched, rtol=1e-5, atol=1e-5)
    if kind == "rtg":     # only the return tokens differ in the embedding: the other cells are left out
        assert not fast.computed[0, 1::3].any() and not fast.computed[0, 2::3].any() and fast.computed[0, 0::3].any()
    if kind == "unbanded":
        assert pair.steps == 3                               # an HF-style model's window is its K steps


def test_heads_grid_equals_one_forward_per_cell(disc):
    agent, ds = disc
    pair = make_pair(agent, ds, episode=1, step=11, corrupt="episode", corrupt_episode=0)
    p = patcher(agent, pair, "value")
    grid = p.heads()
    assert grid.patched.shape == (3, 3) and grid.columns == ["head 0", "head 1", "MLP"]
    T = p.tokens(pair.steps)
    for i in range(3):
        for j in range(3):
            name = f"blocks.{i}.attn.head_out" if j < 2 else f"blocks.{i}.mlp.out"
            mask = torch.zeros((1, T, 2) if j < 2 else (1, T), dtype=torch.bool)
            if j < 2:
                mask[0, :, j] = True
            else:
                mask[0] = True
            assert grid.patched[i, j] == pytest.approx(p.patched({name: mask})[0], abs=1e-5)
    assert np.abs(grid.effect).max() > 0.05


def test_patch_pair_built_by_hand(disc):
    """A PatchPair of any two aligned windows works (what the Circuits page may build)."""
    agent, ds = disc
    data = training_data(agent, ds)
    clean = step_windows(agent, data, np.array([10]), context=5)
    corrupted = step_windows(agent, data, np.array([int(ds.episode_starts[2]) + 10]), context=5)
    pair = PatchPair(clean, corrupted, 5, (0, 10), (2, 10), "episode", 0.0, 1, "by hand")
    p = patcher(agent, pair, "action")
    np.testing.assert_allclose(p.positions().patched, p.positions_naive().patched, atol=1e-5)
    assert pair.labels == token_labels(5) and pair.labels[-2:] == ["s t", "a t"] and pair.labels[0] == "R t-4"


@pytest.mark.parametrize("banded", [True, False])
def test_run_suffix_equals_the_full_forward_with_the_same_intervention(disc, banded):
    """DecisionTransformer.run_suffix from block i, the tokens from the patched position p on, against the corrupted
    run's keys and values before p, gives the full run_with_cache's output with blocks.{i}.resid_pre patched at p."""
    agent, ds = disc if banded else (make_dt(banded=False), disc[1])
    data = training_data(agent, ds)
    L, n = 7, agent.n_layer                                  # 7 steps: beyond K=3, so the band masks keys
    clean = step_windows(agent, data, np.array([10]), context=L)
    corr = step_windows(agent, data, np.array([int(ds.episode_starts[2]) + 10]), context=L)
    names = [f"blocks.{j}.resid_pre" for j in range(n)] + [f"blocks.{n - 1}.resid_post"]
    moved = []
    for o, rtg_known in [(3 * L - 2, True), (3 * L - 2, False), (3 * L - 1, True)]:   # s_t (action, value), a_t (return)
        heads = ("action_preds", "value_preds") if o % 3 == 1 else ("return_preds", "state_preds")
        with torch.no_grad():
            plain, cc = agent.run_with_cache({**clean, "rtg_known": rtg_known}, names)
            corrupted, kc = agent.run_with_cache({**corr, "rtg_known": rtg_known}, names)
        for i, p in [(0, 0), (0, 7), (0, o), (1, 0), (1, 11), (1, o), (2, 0), (2, 13), (2, o), (3, o)]:
            name = names[i]

            def fn(x, p=p, name=name):
                x = x.clone()
                x[:, p] = cc[name][:, p]
                return x

            with torch.no_grad():
                full, _ = agent.run_with_cache({**corr, "rtg_known": rtg_known}, [], {name: fn})
                if i == n:                                   # the last resid_post: the output token alone
                    suffix = agent.run_suffix(n, cc[name][:, o:o + 1], [o])
                else:
                    resid = kc[name][:, p:o + 1].clone()
                    resid[:, 0] = cc[name][:, p]
                    past = [(*agent.keys_values(j, kc[f"blocks.{j}.resid_pre"][:, :p]), torch.arange(p))
                            for j in range(i, n)]
                    suffix = agent.run_suffix(i, resid, torch.arange(p, o + 1), past)
            what = f"block {i}, position {p}, output token {o}, rtg_known={rtg_known}"
            for h in ("action_preds", "value_preds", "return_preds", "state_preds"):
                if h not in heads:
                    assert getattr(suffix, h) is None, what
                    continue
                got, want = getattr(suffix, h)[:, 0], getattr(full, h)[:, o // 3]
                torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5, msg=what)
                moved.append(float((want - getattr(corrupted, h)[:, o // 3]).abs().max()))
            if p == o and i == n:                            # patching the output's last stream restores clean
                torch.testing.assert_close(getattr(suffix, heads[0])[:, 0], getattr(plain, heads[0])[:, o // 3],
                                           atol=1e-5, rtol=1e-5)
    assert max(moved) > 1e-2 and min(moved) < 1e-6          # some patches move the output, some do not (an R token
                                                             # with the return hidden is the same in both runs)


@pytest.mark.parametrize("banded", [True, False])
def test_suffix_grid_equals_naive_at_any_batching(disc, banded):
    """Batches of one position each, of every position of a row, and cut by a small token budget: all the naive grid."""
    agent = disc[0] if banded else make_dt(banded=False, K=9)
    pair = make_pair(agent, disc[1], episode=0, step=10, corrupt="episode", corrupt_episode=2)
    for output in ("action", "value", "return"):
        p = patcher(agent, pair, output)
        naive = p.positions_naive()
        for span, budget in [(1, 4096), (1000, 4096), (1000, 60), (5, 4096)]:
            fast = p.positions(token_budget=budget, span=span)
            np.testing.assert_allclose(fast.patched, naive.patched, rtol=1e-5, atol=1e-5, err_msg=f"{output} {span} {budget}")
        assert p.positions(span=1).forwards == p.positions(span=1).computed.sum()
        assert p.positions(span=1000).forwards == (p.positions(span=1000).computed.sum(1) > 0).sum()


@pytest.mark.parametrize("banded", [True, False])
def test_suffix_grid_with_left_padding_equals_naive(disc, banded):
    """A hand-built pair may keep left padding: padded keys stay masked on the suffix path."""
    agent, ds = disc if banded else (make_dt(banded=False), disc[1])
    data = training_data(agent, ds)
    clean = step_windows(agent, data, np.array([2]), context=6)
    corrupted = step_windows(agent, data, np.array([int(ds.episode_starts[2]) + 2]), context=6)
    assert clean["attention_mask"].tolist() == [[0, 0, 0, 1, 1, 1]]
    pair = PatchPair(clean, corrupted, 6, (0, 2), (2, 2), "episode", 0.0, 1, "padded")
    for output in ("action", "value", "return"):
        p = patcher(agent, pair, output)
        np.testing.assert_allclose(p.positions().patched, p.positions_naive().patched, rtol=1e-5, atol=1e-5)


def test_an_agent_without_partial_forwards_takes_the_batched_path(disc):
    from analysis.interp.patching import uses_suffix

    class OwnForward(DecisionTransformer):
        capabilities = DecisionTransformer.capabilities - {"partial_forward"}   # its forward is its own

        def forward(self, *args, **kw):
            return super().forward(*args, **kw)

    agent, ds = disc
    other = OwnForward(agent.config).eval()
    other.load_state_dict(agent.state_dict())
    assert uses_suffix(agent) and not uses_suffix(other)
    pair = make_pair(other, ds, episode=0, step=10, corrupt="episode", corrupt_episode=2)
    p = patcher(other, pair, "action")
    grid = p.positions()
    np.testing.assert_allclose(grid.patched, p.positions_naive().patched, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grid.patched, patcher(agent, pair, "action").positions().patched, rtol=1e-5, atol=1e-5)
    assert grid.forwards == agent.n_layer + 1                # one batch per residual row


def test_shipped_keydoor_grid(keydoor):
    agent, ds = keydoor
    pair = make_pair(agent, ds, corrupt="key")
    p = patcher(agent, pair, "value")
    grid = p.positions()
    np.testing.assert_allclose(grid.patched, p.positions_naive().patched, rtol=1e-5, atol=1e-5)
    assert p.clean > p.corrupted + 0.1                       # the value head knows the key was taken


# ---- direct logit attribution ---------------------------------------------------------------------
def _forward_output(agent, ds, episode, step, output, index):
    from analysis.interp.patching import window

    inputs, _ = window(agent, training_data(agent, ds), episode, step)
    with torch.no_grad():
        out = agent(**inputs, rtg_known=output != "value")
    if output == "action":
        return float(out.action_preds[0, -1, index])
    return float((out.value_preds if output == "value" else out.return_preds)[0, -1, 0])


@pytest.mark.parametrize("output", ["action", "value", "return"])
def test_dla_parts_sum_to_the_output_discrete(disc, output):
    agent, ds = disc
    for episode, step in [(0, 10), (1, 2)]:
        d = direct_logit_attribution(agent, ds, episode, step, output, action=2 if output == "action" else None)
        assert d.total == pytest.approx(d.output, abs=1e-5)
        assert d.output == pytest.approx(_forward_output(agent, ds, episode, step, output, 2), abs=1e-5)
        assert len(d.names) == len(d.values) == 1 + 3 * 3 + 3 + 2
        assert np.abs(d.heads).max() > 0.01 and np.abs(d.mlps).max() > 0.01


@pytest.mark.parametrize("output", ["action", "value"])
def test_dla_parts_sum_to_the_output_continuous(cont, output):
    agent, ds = cont
    d = direct_logit_attribution(agent, ds, 2, 11, output, action=1)
    assert d.total == pytest.approx(d.output, abs=1e-5)
    if output == "action":    # the decomposed quantity is before the tanh; the action is its tanh
        assert "before tanh" in d.quantity
        assert np.tanh(d.total) == pytest.approx(_forward_output(agent, ds, 2, 11, output, 1), abs=1e-5)
    else:
        assert d.output == pytest.approx(_forward_output(agent, ds, 2, 11, output, 0), abs=1e-5)


@pytest.mark.parametrize("name,data,output", [("keydoor-dt", "keydoor", "value"), ("cartpole-dt", "cartpole", "action"),
                                              ("pendulum-dt", "pendulum", "action")])
def test_dla_parts_sum_to_the_output_shipped(name, data, output):
    agent, ds = load_agent(AGENTS / name), load_dataset(DATA / f"{data}.npz")
    d = direct_logit_attribution(agent, ds, 0, 15, output)
    assert d.total == pytest.approx(d.output, abs=1e-5)
    index = int(ds.actions[15]) if agent.discrete else 0
    model = d.output if agent.discrete or output != "action" else float(np.tanh(d.output))
    assert model == pytest.approx(_forward_output(agent, ds, 0, 15, output, index), abs=1e-5)


# ---- logit lens -------------------------------------------------------------------------------------
@pytest.mark.parametrize("which,output", [("disc", "action"), ("disc", "value"), ("disc", "return"), ("cont", "action")])
def test_logit_lens_last_row_is_the_model_output(disc, cont, which, output):
    agent, ds = disc if which == "disc" else cont
    lens = logit_lens(agent, ds, 0, output, token_budget=60)
    assert lens.values.shape[:2] == (14, 4) and lens.rows[0] == "embedding" and lens.rows[-1] == "after layer 3"
    np.testing.assert_allclose(lens.values[:, -1], lens.final, atol=1e-5)
    # and the model's output is the plain forward's, window by window
    data = training_data(agent, ds)
    inputs = step_windows(agent, data, np.arange(14), context=9)
    with torch.no_grad():
        out = agent(**inputs, rtg_known=output != "value")
    ref = {"action": out.action_preds, "value": out.value_preds, "return": out.return_preds}[output][:, -1].numpy()
    np.testing.assert_allclose(lens.final, ref * (10.0 if output != "action" else 1.0), atol=1e-4)
    assert np.abs(lens.values[:, 0] - lens.values[:, -1]).max() > 1e-3      # earlier rows are not the output
    if which == "disc" and output == "action":
        assert lens.shown.shape == (14, 4) and ((0 <= lens.shown) & (lens.shown <= 1)).all()
        assert ((0 <= lens.decided) & (lens.decided <= 3)).all()


def test_logit_lens_samples_long_episodes(keydoor):
    agent, ds = keydoor
    lens = logit_lens(agent, ds, 0, "value", max_steps=5)
    assert lens.sampled and len(lens.steps) == 5 and lens.steps[0] == 0 and lens.steps[-1] == ds.episode_lengths[0] - 1
    np.testing.assert_allclose(lens.values[:, -1], lens.final, atol=1e-5)


# ---- Key-to-Door pairs ------------------------------------------------------------------------------
def test_key_door_pair_differs_in_key_pickup(keydoor):
    from analysis.interp.attribution_markers import key_door_steps

    agent, ds = keydoor
    clean, corrupted, step = key_door_pair(ds)

    def marks(e):
        s, t = ds.episode_starts[e], ds.episode_ends[e]
        return key_door_steps(ds.observations[s:t], ds.actions[s:t])

    assert marks(clean).has_key and not marks(corrupted).has_key
    assert step == marks(clean).phase3_step == marks(corrupted).phase3_step
    assert ds.episode_returns[clean] > 0
    pair = make_pair(agent, ds, corrupt="key")
    assert pair.clean_at == (clean, step) and pair.corrupted_at == (corrupted, step)
    assert pair.clean["states"].shape == pair.corrupted["states"].shape
    with pytest.raises(ValueError, match=f"episode {corrupted} did not pick up the key"):
        key_door_pair(ds, episode=corrupted)
    with pytest.raises(ValueError, match=f"episode {clean} picked up the key"):
        key_door_pair(ds, episode=clean, corrupt_episode=clean)


# ---- bad input --------------------------------------------------------------------------------------
def test_bad_input_sentences(disc, keydoor):
    agent, ds = disc

    def one_sentence(fn, *match):
        with pytest.raises(ValueError) as err:
            fn()
        msg = str(err.value)
        assert "\n" not in msg
        for m in match:
            assert m in msg, msg
        return msg

    # windows of different lengths: what fits instead
    one_sentence(lambda: make_pair(agent, ds, episode=0, step=3, corrupt_step=10, corrupt_episode=2),
                 "4 real steps", "has 9", "corrupt_step=3", "at least 8")
    one_sentence(lambda: make_pair(agent, ds, episode=0, step=14), "step 14 is out of range", "0..13")
    one_sentence(lambda: make_pair(agent, ds, episode=9), "episode 9 is out of range", "4 episodes")
    one_sentence(lambda: make_pair(agent, ds, episode=0, step=8, corrupt_episode=3), "step 8 is out of range",
                 "corrupt_episode 3 has 6 steps")
    one_sentence(lambda: make_pair(agent, ds, corrupt="key"), "Key-to-Door")
    one_sentence(lambda: make_pair(agent, ds, corrupt="noise"), "episode, rtg, key")
    pair = make_pair(agent, ds, episode=0, step=10, corrupt="rtg", rtg_shift=5.0)
    one_sentence(lambda: patcher(agent, pair, "value"), "same value", "hides every return-to-go")
    one_sentence(lambda: patcher(agent, pair, "action", action=3), "3 actions (0..2)")
    one_sentence(lambda: patcher(agent, pair, "reward"), "action, value, return")
    one_sentence(lambda: patcher(agent, pair, "action", metric="odds"), "logit or prob")

    class NoValue(DecisionTransformer):
        capabilities = DecisionTransformer.capabilities - {"value"}

    blind = NoValue(agent.config).eval()
    one_sentence(lambda: patcher(blind, pair, "value"), "no value head", "action, return")
    one_sentence(lambda: direct_logit_attribution(blind, ds, 0, 3, "value"), "no value head")
    mlp = load_agent(AGENTS / "keydoor-mlp")
    kd = keydoor[1]
    from analysis.publish import catalog
    one_sentence(lambda: catalog.make("patching_positions", mlp, kd, output="value"), "no value head", "outputs it has: action")
    one_sentence(lambda: catalog.make("patching_positions", mlp, kd), "needs a Decision Transformer")
    one_sentence(lambda: catalog.make("logit_lens", keydoor[0], kd, episode=5000), "episode 5000 is out of range")


# ---- catalog and CLI --------------------------------------------------------------------------------
def test_catalog_entries_with_defaults(keydoor):
    from analysis.publish import catalog
    agent, ds = keydoor
    for name in ("patching_positions", "patching_heads", "direct_logit_attribution", "logit_lens"):
        fig = catalog.make(name, agent, ds)
        assert fig.name == name and len(fig.data) and fig.figure.data
    heads = catalog.make("patching_heads", agent, ds, output="value", corrupt="episode", episode=3, step=10)
    assert heads.params["corrupt_episode"] == 4 and heads.params["output"] == "value"
    assert list(heads.data["column"][:2]) == ["head 0", "MLP"]


def test_cli_exports_the_patching_grid(tmp_path):
    out = tmp_path / "grid.csv"
    res = subprocess.run([sys.executable, "cli.py", "export", "--figure", "patching_positions", "--agent",
                          str(AGENTS / "keydoor-dt"), "--param", "output=value", "--format", "csv", "--out", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    grid = pd.read_csv(out)
    assert {"row", "label", "column", "position", "steps_back", "patched", "effect", "computed"} <= set(grid.columns)
    assert list(grid["row"].unique()) == ["blocks.0.resid_pre", "blocks.1.resid_pre", "blocks.2.resid_pre",
                                          "blocks.2.resid_post"]
    # the default pair is read at the first phase-3 step (15): a 16-step window (no padding), tokens up to s_t:
    # 47 positions in each of 4 rows
    assert len(grid) == 4 * 47 and grid["column"].iloc[46] == "s t" and grid["column"].iloc[0] == "R t-15"
    last = grid[grid["row"] == "blocks.2.resid_post"]
    assert last["effect"].iloc[-1] == pytest.approx(1.0, abs=1e-5) and (last["effect"].iloc[:-1] == 0).all()
    assert grid["effect"].abs().max() > 0.5
    bad = subprocess.run([sys.executable, "cli.py", "export", "--figure", "patching_positions", "--agent",
                          str(AGENTS / "keydoor-dt"), "--param", "step=40", "--format", "csv", "--out", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "out of range" in bad.stderr and "Traceback" not in bad.stderr
