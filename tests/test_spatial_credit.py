"""Spatial credit (analysis/interp/spatial_credit.py): known answers on hand-made DTs whose state encoder reads one
grid cell, IG completeness, the batched saliency equal to one backward per step (grids from a DTI import, frame
stacks from the DT paper's Atari GPT), and the figure's overlay where the credit is."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import cli
import dti_reference as dti
from analysis.interp import spatial_credit as sc
from models import load_agent
from models.base import AgentConfig
from models.decision_transformer import DecisionTransformer
from trajectories.dataset import Dataset


def grid_dt(shape=(5, 5, 3), K=4, n_actions=3, seed=0, value=False) -> DecisionTransformer:
    torch.manual_seed(seed)
    config = AgentConfig(kind="dt", obs_dim=int(np.prod(shape)), act_dim=1, discrete=True, n_actions=n_actions,
                         context_length=K, max_ep_len=64,
                         hparams={"hidden": 16, "n_layer": 2, "n_head": 2, "obs_shape": list(shape), "state_encoder": "grid"})
    return DecisionTransformer(config).eval()


def grid_dataset(shape=(5, 5, 3), lengths=(3, 9, 6), n_actions=3, seed=0) -> Dataset:
    """Episodes of MiniGrid-like grids (object 1..8, colour 0..5, state 0..2), uint8 (T, H, W, 3)."""
    rng = np.random.default_rng(seed)
    n = sum(lengths)
    obs = np.stack([rng.integers(1, 9, (n, *shape[:2])), rng.integers(0, 6, (n, *shape[:2])),
                    rng.integers(0, 3, (n, *shape[:2]))], -1).astype(np.uint8)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    done = np.zeros(n, bool)
    done[np.cumsum(lengths) - 1] = True
    rewards = np.where(done, 1.0, 0.0).astype(np.float32)
    return Dataset(obs, rng.integers(0, n_actions, n).astype(np.int64), rewards, done, np.zeros(n, bool), starts,
                   n_actions=n_actions)


def one_cell_dt(cell=(1, 3), channel=0):
    """A DT whose logits read exactly one cell of the current step: the state embedding is zero but for one input
    (cell, channel) and every attention output is zero, so no token reads another."""
    agent = grid_dt()
    H, W, C = 5, 5, 3
    with torch.no_grad():
        w = agent.embed_state.weight
        keep = w[:, (cell[0] * W + cell[1]) * C + channel].clone()
        w.zero_()
        w[:, (cell[0] * W + cell[1]) * C + channel] = keep * 20
        for name, p in agent.named_parameters():
            if "attn.c_proj" in name:
                p.zero_()
        agent.predict_action.weight.mul_(50)   # logits of order 1: a gradient well above float noise
    return agent


@pytest.mark.parametrize("method", ["saliency", "ig"])
def test_one_cell_of_one_step_gets_all_the_credit(method):
    agent, ds = one_cell_dt(), grid_dataset()
    res = sc.spatial_credit(agent, ds, [3 + 6, 3 + 2], method=method)   # episode 1 steps 6 and 2 (padded window)
    for r in res:
        assert r.maps.shape == (4, 1, 5, 5) and r.layout == "cells"
        nz = np.argwhere(r.maps != 0)
        assert nz.tolist() == [[3, 0, 1, 3]], nz   # the current step, cell (1, 3), nothing else
        assert abs(r.maps[3, 0, 1, 3]) > 1e-3
    assert res[1].window_steps.tolist() == [-1, 0, 1, 2] and res[0].window_steps.tolist() == [3, 4, 5, 6]
    if method == "ig":
        assert res[0].totals.sum() == pytest.approx(res[0].output - res[0].baseline_output, rel=1e-2)   # delta_tol


@pytest.mark.parametrize("target", ["action", "value"])
def test_integrated_gradients_are_complete(target):
    """Sum of attributions over every real cell of every step = f(x) - f(zeros) within 1% (a model with attention)."""
    agent, ds = grid_dt(seed=1), grid_dataset(seed=1)
    res = sc.spatial_credit(agent, ds, [4, 8, 11, 15], target=target, method="ig", n_steps=64)
    for r in res:
        diff = r.output - r.baseline_output
        assert abs(diff) > 1e-3
        assert r.totals[r.mask].sum() == pytest.approx(diff, rel=1e-2, abs=1e-5)
        assert abs(r.delta) <= 1e-2 * abs(diff) + 1e-5
        assert np.all(r.maps[~r.mask] == 0)
        assert len(np.unique(np.flatnonzero(np.abs(r.totals) > 0))) > 1   # credit spread over several steps
    chosen = ds.observations[0]   # a chosen baseline: the first observation of the dataset
    r = sc.spatial_credit(agent, ds, [8], target=target, method="ig", baseline=chosen, n_steps=64)[0]
    assert r.baseline == "a chosen observation"
    assert r.totals.sum() == pytest.approx(r.output - r.baseline_output, rel=1e-2, abs=1e-5)


def test_batched_saliency_equals_one_backward_per_step_on_a_dti_import(tmp_path):
    """A DTI checkpoint (tests/dti_reference.py) converted by `convert-agent --from dti`: saliency for many windows
    of 7x7x3 grids at once equals one backward per step within 1e-5."""
    mc = dti.model_config(n_ctx=8, layer_norm="LN")
    ref = dti.DTIReference(mc, 3, (7, 7, 3), 40).randomize(0).eval()
    dti.checkpoint(tmp_path / "m.pt", ref, dti.environment_config("MiniGrid-MemoryS7FixedStart-v0", 40, False), mc)
    assert cli.main(["convert-agent", str(tmp_path / "m.pt"), "--out", str(tmp_path / "agent")]) == 0
    agent = load_agent(tmp_path / "agent")
    ds = grid_dataset((7, 7, 3), lengths=(2, 7, 5))
    steps = np.array([0, 1, 4, 8, 13])
    from analysis.core.inputs import training_data
    from analysis.interp.attribution_adapters import model_inputs

    model, inputs, *_ = model_inputs(agent, training_data(agent, ds), steps)
    shape, layout = sc.observation_layout(agent)
    idx = ds.actions[steps]
    fast = sc.spatial_attribute(model, inputs, idx, shape, layout)["maps"]
    naive = sc.saliency_per_step(model, inputs, idx, shape, layout)
    assert fast.shape == (5, 3, 1, 7, 7)
    np.testing.assert_allclose(fast, naive, atol=1e-5, rtol=0)
    assert np.all(fast[0, :2] == 0)   # step 0: two padded positions
    real = inputs["attention_mask"].numpy().astype(bool)
    assert real.tolist() == [[False, False, True], [False, True, True]] + [[True] * 3] * 3
    per_step = fast.reshape(5, 3, -1).max(-1)
    assert per_step[real].min() > 1e-3   # every real step's map well above the tolerance: the comparison reads them
    np.testing.assert_allclose(fast, naive, rtol=1e-4, atol=1e-7)


def test_frame_stacks_get_a_map_per_frame_and_pixel():
    """An atari_conv DT (the DT paper's encoder) over 4x84x84 frames: maps [L, 4, 84, 84], batched == naive."""
    torch.manual_seed(0)
    config = AgentConfig(kind="dt", obs_dim=4 * 84 * 84, act_dim=1, discrete=True, n_actions=4, context_length=3,
                         max_ep_len=32, state_mean=[0.0], state_std=[255.0],
                         hparams={"hidden": 16, "n_layer": 1, "n_head": 2, "obs_shape": [4, 84, 84],
                                  "state_encoder": "atari_conv"})
    config.state_mean, config.state_std = [0.0] * config.obs_dim, [255.0] * config.obs_dim
    agent = DecisionTransformer(config).eval()
    rng = np.random.default_rng(0)
    n = 6
    obs = rng.integers(0, 256, (n, 4, 84, 84)).astype(np.uint8)
    done = np.zeros(n, bool)
    done[[1, 5]] = True
    ds = Dataset(obs, rng.integers(0, 4, n).astype(np.int64), done.astype(np.float32), done, np.zeros(n, bool),
                 np.array([0, 2]), n_actions=4)
    res = sc.spatial_credit(agent, ds, [1, 5])
    assert res[0].layout == "frames" and res[0].maps.shape == (3, 4, 84, 84)
    assert res[0].window_steps.tolist() == [-1, 0, 1] and np.all(res[0].maps[0] == 0)
    assert (res[1].maps[1:] > 0).mean() > 0.5 and res[1].summed().shape == (4, 84, 84)
    from analysis.core.inputs import training_data
    from analysis.interp.attribution_adapters import model_inputs

    model, inputs, *_ = model_inputs(agent, training_data(agent, ds), np.array([1, 5]))
    naive = sc.saliency_per_step(model, inputs, ds.actions[[1, 5]], (4, 84, 84), "frames")
    np.testing.assert_allclose(np.stack([r.maps for r in res]), naive, atol=1e-5, rtol=0)


def test_bad_requests_get_one_sentence():
    agent, ds = grid_dt(), grid_dataset()
    with pytest.raises(ValueError, match="baseline observation must have the agent's observation shape"):
        sc.spatial_credit(agent, ds, [3], method="ig", baseline=np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="unknown method"):
        sc.spatial_credit(agent, ds, [3], method="ablation")
    with pytest.raises(ValueError, match="steps must lie in 0..17"):
        sc.spatial_credit(agent, ds, [18])
    from analysis.publish import catalog

    for params, words in (({"scale": "global"}, "scale must be one of window, step, got 'global'."),
                          ({"target": "return"}, "unknown target 'return' (known: action, value)."),
                          ({"method": "ablation"}, "unknown method 'ablation' (known: saliency, ig).")):
        with pytest.raises(ValueError) as e:
            catalog.make("spatial_credit", agent, ds, **params)
        assert str(e.value) == words
    vec = DecisionTransformer(AgentConfig(kind="dt", obs_dim=4, act_dim=1, discrete=True, n_actions=2,
                                          context_length=2, hparams={"hidden": 8, "n_layer": 1})).eval()
    with pytest.raises(ValueError, match="spatial credit needs an agent that reads grids"):
        sc.observation_layout(vec)


def test_figure_overlays_the_credited_cell():
    """The strip's picture of the current step differs from the plain picture only inside the credited cell (drawn
    where MiniGrid draws image[x, y]: column x, row y), and a summed panel closes the strip."""
    from analysis.publish.figures.dataset import CELL_PX, frames_rgb
    from analysis.publish.figures.spatial import _muted, overlay_pictures, spatial_strip

    agent, ds = one_cell_dt(cell=(1, 3)), grid_dataset()
    r = sc.spatial_credit(agent, ds, [9])[0]
    pics = overlay_pictures(r)
    plain = _muted(frames_rgb(r.observations, grid=True).astype(float)).round().astype(np.uint8)
    assert pics.shape == (5, *plain.shape[1:])   # 4 steps + the sum
    changed = np.argwhere((pics[3] != plain[3]).any(-1))
    ys, xs = changed[:, 0] // CELL_PX, changed[:, 1] // CELL_PX
    assert set(zip(xs.tolist(), ys.tolist())) == {(1, 3)}   # image[x=1, y=3]
    assert np.array_equal(pics[:3], plain[:3])
    with pytest.raises(ValueError, match="scale must be one of window, step"):
        overlay_pictures(r, scale="global")
    fig = spatial_strip(r, data="grids.npz", action_names=["left", "right", "forward"])
    images = [t for t in fig.data if t.type == "image"]
    assert len(images) == 5
    assert "grids.npz" in fig.layout.title.text and ("left" in fig.layout.title.text or "right" in fig.layout.title.text
                                                    or "forward" in fig.layout.title.text)


def test_credit_page_shows_the_spatial_section_only_for_shaped_agents():
    """An uploaded grid DT on an uploaded grid dataset: the page's spatial section draws the catalog's figure (one
    picture per step and the sum); a vector agent's page has no such section."""
    import json

    from test_page_attention import page

    agent, ds = one_cell_dt(), grid_dataset()
    ds.source = "grids.npz"
    at = page("4_Credit_assignment.py", "upload: cell.zip", "upload: grids.npz", uploads={"grids.npz": ds},
              uploaded_agents={"cell.zip": agent}, spatial_episode=1)
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    spatial = [s for s in specs if [t["type"] for t in s["data"]] == ["image"] * 5]   # K=4 steps + the sum
    assert len(spatial) == 1 and "grids.npz" in spatial[0]["layout"]["title"]["text"]
    assert any("credit on the observations" in h.value for h in at.subheader)
    at.selectbox(key="spatial_method").select("ig").run()
    assert not at.exception
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert any("Integrated gradients on the observations" in s["layout"]["title"]["text"] for s in specs)
    plain = page("4_Credit_assignment.py", "cartpole-dt", "cartpole")
    assert not any("credit on the observations" in h.value for h in plain.subheader)


def _changed_cells(pic, plain_pic):
    """The MiniGrid cells (x, y) where a panel's picture differs from the plain one, and the largest change there."""
    from analysis.publish.figures.dataset import CELL_PX

    diff = np.abs(pic.astype(float) - plain_pic.astype(float)).max(-1)
    ys, xs = np.nonzero(diff)
    return set(zip((xs // CELL_PX).tolist(), (ys // CELL_PX).tolist())), float(diff.max())


def _scaled(agent, factor):
    import copy

    b = copy.deepcopy(agent)
    with torch.no_grad():
        b.predict_action.weight.mul_(factor)   # logits (and their gradients) scaled: the credit scaled by `factor`
        b.predict_action.bias.mul_(factor)
    return b


def _panels(fig):
    """The pictures of a compare figure, row by row (A, B[, B − A] of the current step, then of the window sum)."""
    return [np.asarray(t.z) for t in fig.data if t.type == "image"]


def test_compare_mode_puts_two_agents_on_one_observation_and_scale():
    """Two one-cell DTs (A reads cell (1, 3), B cell (2, 2)): A's panels change only A's cell, B's only B's, B − A
    both (blue where A's credit is larger, red where B's); one scale: B with half of A's credit is drawn fainter
    (sqrt(1/2) of A's opacity); B with 10% of A's credit gets no B − A panel, and the title says why."""
    from analysis.publish.compare_mode import compare
    from analysis.publish.figures.dataset import frames_rgb
    from analysis.publish.figures.spatial import MAX_ALPHA, NEGATIVE, POSITIVE, _muted

    ds = grid_dataset()
    a, b = one_cell_dt(cell=(1, 3)), one_cell_dt(cell=(2, 2))
    f = compare("spatial_credit", a, b, ds, "A", "B", episode=1, step=6)
    obs = ds.observations[3 + 6]
    plain_pic = _muted(frames_rgb(obs[None], grid=True).astype(float))[0].round().astype(np.uint8)
    panels = _panels(f.figure)
    assert len(panels) == 6   # A, B, B − A; now and window sum (row by row)
    now_a, now_b, now_d = panels[:3]
    assert _changed_cells(now_a, plain_pic)[0] == {(1, 3)} and _changed_cells(now_b, plain_pic)[0] == {(2, 2)}
    assert _changed_cells(now_d, plain_pic)[0] == {(1, 3), (2, 2)}
    from analysis.publish.figures.dataset import CELL_PX
    at = lambda pic, x, y: pic[y * CELL_PX + CELL_PX // 2, x * CELL_PX + CELL_PX // 2].astype(float)   # noqa: E731
    base_a, base_b = plain_pic[3 * CELL_PX + CELL_PX // 2, 1 * CELL_PX + CELL_PX // 2], \
        plain_pic[2 * CELL_PX + CELL_PX // 2, 2 * CELL_PX + CELL_PX // 2]
    towards = lambda pic, x, y, base, colour: np.dot(at(pic, x, y) - base, colour - base)   # noqa: E731
    assert towards(now_d, 1, 3, base_a, NEGATIVE) > 0 and towards(now_d, 2, 2, base_b, POSITIVE) > 0
    data = f.data
    assert set(data["agent"]) == {"A", "B", "B − A"}
    d = data[data["agent"] == "B − A"].reset_index(drop=True)
    np.testing.assert_allclose(d["credit"], data[data["agent"] == "B"]["credit"].to_numpy()
                               - data[data["agent"] == "A"]["credit"].to_numpy())

    half = compare("spatial_credit", a, _scaled(a, 0.5), ds, "A", "half", episode=1, step=6)
    pa, pb = _panels(half.figure)[:2]

    def alpha(pic):   # out = base (1 - alpha) + red alpha at the centre of A's cell, on its most telling channel
        c = int(np.argmax(np.abs(POSITIVE - base_a)))
        return (at(pic, 1, 3)[c] - base_a[c]) / (POSITIVE[c] - base_a[c])
    assert alpha(pa) == pytest.approx(MAX_ALPHA, abs=0.02)
    assert alpha(pb) == pytest.approx(MAX_ALPHA * np.sqrt(0.5), abs=0.02)   # the shared scale
    tenth = compare("spatial_credit", a, _scaled(a, 0.1), ds, "A", "tenth", episode=1, step=6)
    assert len(_panels(tenth.figure)) == 4 and set(tenth.data["agent"]) == {"A", "tenth"}
    assert "no B − A: tenth's strongest credit is 10% of the other's" in tenth.figure.layout.title.text


def test_compare_mode_on_memory_dt_against_its_randomized_copy(tmp_path):
    """memory-dt beside its randomized copy (?compare=randomized): a PNG export of the pair through kaleido."""
    from pathlib import Path

    from analysis.publish.compare_mode import compare, randomized_agent
    from trajectories import load_dataset
    from trajectories.samples import sample_datasets

    root = Path(__file__).resolve().parent.parent
    agent, ds = load_agent(root / "sample_data/agents/memory-dt"), load_dataset(sample_datasets()["memory"])
    f = compare("spatial_credit", agent, randomized_agent(agent), ds, "memory-dt", "randomized", episode=2, step=4,
                method="ig")
    panels = _panels(f.figure)
    assert len(panels) in (4, 6) and all(p.shape == panels[0].shape for p in panels)
    title = f.figure.layout.title.text
    heads = [a.text for a in f.figure.layout.annotations]
    assert "memory-dt vs randomized" in title and "baseline the dataset's mean observation" in title
    assert heads[0].startswith("memory-dt: now<br>5 steps, f(x) = ") and "IG δ = " in heads[0]
    assert heads[1].startswith("randomized: now<br>5 steps")
    out = tmp_path / "pair.png"
    f.figure.write_image(out, scale=1)
    from PIL import Image

    png = Image.open(out)
    assert png.size == (int(f.figure.layout.width), int(f.figure.layout.height))


def test_each_step_on_its_own_scale_shows_a_faint_past_step():
    """On a model with attention, a past step's credit is a small part of the current one's: on one scale its
    overlay is fainter than on its own (where its strongest cell gets the full opacity, as the current step's does)."""
    from analysis.publish.figures.dataset import frames_rgb
    from analysis.publish.figures.spatial import MAX_ALPHA, _muted, overlay_pictures

    r = sc.spatial_credit(grid_dt(seed=1), grid_dataset(seed=1), [8])[0]
    base = _muted(frames_rgb(r.observations, grid=True).astype(float))
    change = lambda pics: np.abs(pics[:4].astype(float) - base).max((1, 2, 3))   # noqa: E731
    one, own = change(overlay_pictures(r, scale="window")), change(overlay_pictures(r, scale="step"))
    per = np.abs(r.maps).reshape(4, -1).max(1)
    weakest = int(np.argmin(per))
    assert per[weakest] < per.max() and own[weakest] > one[weakest]
    assert own[per.argmax()] == pytest.approx(one[per.argmax()], abs=1)


def test_integrated_gradients_in_chunks_equal_one_batch(monkeypatch):
    """IG's interpolated windows run in chunks of at most IG_VALUES input values: 5 windows per chunk give the
    maps of one batch."""
    from analysis.core.inputs import training_data
    from analysis.interp.attribution_adapters import model_inputs

    agent, ds = grid_dt(seed=2), grid_dataset(seed=2)
    steps = np.array([4, 8, 15])
    model, inputs, *_ = model_inputs(agent, training_data(agent, ds), steps)
    one = sc.spatial_attribute(model, inputs, ds.actions[steps], (5, 5, 3), "cells", method="ig", n_steps=16,
                               max_n_steps=16)
    monkeypatch.setattr(sc, "IG_VALUES", 5 * 4 * 75)   # 5 windows of 4 steps of 5x5x3
    chunked = sc.spatial_attribute(model, inputs, ds.actions[steps], (5, 5, 3), "cells", method="ig", n_steps=16,
                                   max_n_steps=16)
    assert np.abs(one["maps"]).max() > 1e-3
    np.testing.assert_allclose(chunked["maps"], one["maps"], atol=1e-6, rtol=1e-5)
    np.testing.assert_allclose(chunked["delta"], one["delta"], atol=1e-6)


@pytest.mark.parametrize("shape, encoder, want", [
    ((7, 7, 3), "grid", ((7, 7, 3), "cells")), ((7, 7, 20), "grid", ((7, 7, 20), "cells")),
    ((4, 84, 84), "atari_conv", ((4, 84, 84), "frames")), (None, "atari_conv", ((4, 84, 84), "frames")),
    ((4, 84, 84), "linear", ((4, 84, 84), "frames")), ((84, 84, 1), "linear", ((84, 84, 1), "pixels")),
    ((64, 48), "linear", ((64, 48), "pixels"))])
def test_observation_layouts(shape, encoder, want):
    from types import SimpleNamespace

    agent = SimpleNamespace(obs_dim=int(np.prod(shape or (4, 84, 84))),
                            config=SimpleNamespace(hparams={"obs_shape": shape, "state_encoder": encoder}))
    assert sc.observation_layout(agent) == want
    attr = torch.arange(2 * 3 * int(np.prod(want[0])), dtype=torch.float32).reshape(2, 3, *want[0])
    maps = sc.to_maps(attr, *want)
    F = want[0][0] if want[1] == "frames" else 1
    assert maps.shape == (2, 3, F, *(want[0][1:] if want[1] == "frames" else want[0][:2]))
    assert float(maps.sum()) == pytest.approx(float(attr.sum()))   # channels summed, nothing lost
