"""Only informative panels (issue 27, item 5): a reward that never changes is a line under the title, not a block of
bars (CartPole's 1 under the attention, credit and dataset charts; a failed Key-to-Door episode's 0, an empty -1..1
panel); colour scales fit the data, with the fixed scale as a parameter and said on the colour bar; every token of
the rollout chart labelled."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from analysis.interp.attention import episode_attention, window_attention
from analysis.publish import catalog
from analysis.publish import figures as figs
from analysis.publish.figures import labels as L
from models import load_agent
from trajectories import load_dataset

ROOT = Path(__file__).resolve().parent.parent
AGENTS, DATA = ROOT / "sample_data/agents", ROOT / "sample_data/datasets"


@pytest.fixture(scope="module")
def cartpole():
    return load_dataset(DATA / "cartpole.npz").select([0, 1, 3])


@pytest.fixture(scope="module")
def keydoor():
    ds = load_dataset(DATA / "keydoor.npz").select([0, 1])
    assert (ds.episode(0).rewards == 0).all() and ds.episode(1).rewards.max() == 1   # failed, then found the door
    return ds


@pytest.fixture(scope="module")
def dt():
    return load_agent(AGENTS / "cartpole-dt")


@pytest.fixture(scope="module")
def keydoor_dt():
    return load_agent(AGENTS / "keydoor-dt")


def bars(fig, what="reward"):
    return [t for t in fig.data if t.type == "bar" and (t.name == what or what in (t.hovertemplate or ""))]


def test_constant():
    assert L.constant(np.ones(500)) == 1.0 and L.constant([0.0, 0.0]) == 0.0
    assert L.constant([0.0, 1.0]) is None and L.constant([]) is None
    assert L.constant_note("reward", 1.0) == "reward is 1 at every step (constant: not drawn)"


def test_dataset_timeline_drops_a_constant_reward_and_keeps_a_varying_one(cartpole, keydoor):
    flat = catalog.make("episode_timeline", None, cartpole, episode=0).figure
    assert not bars(flat) and [t.name for t in flat.data] == ["return-to-go"]
    assert "reward is 1 at every step (constant: not drawn)" in flat.layout.title.text
    assert flat.layout.showlegend is False and "yaxis2" not in flat.layout.to_plotly_json()
    failed = catalog.make("episode_timeline", None, keydoor, episode=0).figure
    assert not bars(failed) and "reward is 0 at every step" in failed.layout.title.text
    varying = catalog.make("episode_timeline", None, keydoor, episode=1).figure
    assert len(bars(varying)) == 1 and "constant" not in varying.layout.title.text
    assert np.array_equal(bars(varying)[0].y, keydoor.episode(1).rewards)


def test_episode_attention_drops_a_constant_reward(dt, cartpole, keydoor_dt, keydoor):
    fig = catalog.make("attention_episode", dt, cartpole, episode=1).figure
    assert not bars(fig) and "reward is 1 at every step" in fig.layout.title.text
    assert [t.type for t in fig.data] == ["heatmap"]
    failed = catalog.make("attention_episode", keydoor_dt, keydoor, episode=0).figure
    assert not bars(failed) and "reward is 0 at every step" in failed.layout.title.text
    found = catalog.make("attention_episode", keydoor_dt, keydoor, episode=1).figure
    assert len(bars(found)) == 1 and "constant" not in found.layout.title.text


def test_credit_chart_drops_a_constant_reward_row(dt, cartpole, keydoor_dt, keydoor):
    fig = catalog.make("attribution_timesteps", dt, cartpole, episode=0, step=30, method="saliency").figure
    assert not [t for t in fig.data if "reward" in (t.hovertemplate or "")]
    assert "reward is 1 on steps" in fig.layout.title.text and "(constant: not drawn)" in fig.layout.title.text
    last = int(keydoor.episode_lengths[1]) - 1     # the door's reward in view
    kd = catalog.make("attribution_timesteps", keydoor_dt, keydoor, episode=1, step=last, method="saliency").figure
    rewards = [t for t in kd.data if "reward" in (t.hovertemplate or "")]
    assert rewards and max(float(np.max(t.y)) for t in rewards) == 1.0 and "constant" not in kd.layout.title.text


def test_attention_map_colour_scale_fits_the_data_or_is_fixed_on_request(dt, cartpole):
    att = window_attention(dt, cartpole, 0, 100)   # a full window: every weight of the last layer is under 0.2
    keep = np.flatnonzero(att.valid)
    w = att.weights[-1].mean(0)[np.ix_(keep, keep)]
    fig = catalog.make("attention_map", dt, cartpole, episode=0, step=100).figure
    heat = fig.data[0]
    earlier = w[np.tril(np.ones(w.shape, bool), -1) & (w > 0)]   # each query's weights on earlier tokens
    cap = float(np.percentile(earlier, 99))
    assert heat.zmin == 0 and heat.zmax == pytest.approx(cap, rel=1e-6) and cap < float(w.max()) < 0.2
    assert heat.colorbar.title.text == f"weight<br>(colour capped<br>at p99 = {cap:.2g};<br>brighter cells<br>≥ cap)"
    made = catalog.make("attention_map", dt, cartpole, episode=0, step=100, scale="fixed")
    assert made.figure.data[0].zmax == 1.0 and made.figure.data[0].colorbar.title.text == "weight<br>(fixed 0–1)"
    assert made.params["scale"] == "fixed"
    with pytest.raises(ValueError, match="scale must be 'data'"):
        catalog.make("attention_map", dt, cartpole, episode=0, step=10, scale="log")


def test_episode_attention_colour_scale(dt, cartpole):
    summary = episode_attention(dt, cartpole, 1).summary(None)
    heat = catalog.make("attention_episode", dt, cartpole, episode=1).figure.data[0]
    T, K = summary.shape
    t, k = np.indices((T, K))
    seen = summary[(t >= 1) & (k <= t) & (summary > 0)]   # step 0's forced 1.0 on itself left out
    assert summary.max() == pytest.approx(1.0) and summary[0, 0] == pytest.approx(1.0)
    assert heat.zmax == pytest.approx(float(np.percentile(seen, 99)), rel=1e-6) and heat.zmax < 0.5
    assert "colour capped<br>at p99 = " in heat.colorbar.title.text
    fixed = catalog.make("attention_episode", dt, cartpole, episode=1, scale="fixed").figure.data[0]
    assert fixed.zmax == 1.0 and "fixed 0–1" in fixed.colorbar.title.text


def test_logit_lens_colour_bar_says_what_it_shows(dt, cartpole, keydoor_dt, keydoor):
    lens = catalog.make("logit_lens", dt, cartpole, episode=0, max_steps=8).figure.data[0]
    assert lens.colorbar.title.text == "P(the chosen action)<br>(fitted to the values shown)"
    z = np.asarray(lens.z, float)
    assert (lens.zmin, lens.zmax) == pytest.approx((float(np.nanmin(z)), float(np.nanmax(z))))
    fixed = catalog.make("logit_lens", dt, cartpole, episode=0, max_steps=8, scale="fixed").figure.data[0]
    assert (fixed.zmin, fixed.zmax) == (0.0, 1.0) and fixed.colorbar.title.text.endswith("(fixed 0–1)")
    value = catalog.make("logit_lens", keydoor_dt, keydoor, episode=1, output="value", max_steps=8).figure.data[0]
    assert value.colorbar.title.text.startswith("value prediction (return units)")


def test_rollout_labels_every_token(dt, cartpole):
    att = window_attention(dt, cartpole, 0, 30)
    fig = catalog.make("attention_rollout", dt, cartpole, episode=0, step=30).figure
    want = [att.labels[i] for i in np.flatnonzero(att.valid)]
    assert len(want) == 3 * min(dt.context_length, 31)
    assert list(fig.layout.xaxis.tickvals) == want and list(fig.layout.xaxis.ticktext) == want
    assert fig.layout.xaxis.tickmode == "array"
    assert all("%{x}" in t.hovertemplate for t in fig.data)


def test_data_cap_is_the_99th_percentile_of_the_informative_weights():
    w = np.r_[np.arange(1, 102) / 1000, 1.0, 1.0, 0.0]            # 101 weights 0.001..0.101, two forced 1.0s, a zero
    informative = np.r_[np.ones(101, bool), False, False, True]
    cap = L.data_cap(w, informative)
    assert cap.capped and cap.zmax == pytest.approx(0.1)           # index 99 of 101 sorted: 100/1000 exactly
    assert cap.title("weight") == "weight<br>(colour capped<br>at p99 = 0.1;<br>brighter cells<br>≥ cap)"
    whole = L.data_cap(w)                                          # with the forced 1.0s counted, p99 is near 1
    assert whole.zmax == pytest.approx(float(np.percentile(w[w > 0], 99)))
    flat = L.data_cap(np.full(5, 0.2))                             # nothing above the percentile: the max, no cap
    assert not flat.capped and flat.zmax == pytest.approx(0.2) and flat.title("w") == "w<br>(0 to max shown)"
    assert L.data_cap(np.zeros(3)) == L.Cap(1e-6, False)


def test_episode_map_on_a_hand_made_summary_is_capped_at_p99_of_the_steps_after_the_first():
    summary = np.zeros((102, 1))
    summary[0, 0] = 1.0                                            # the first step attends only to itself
    summary[1:, 0] = np.arange(1, 102) / 1000
    heat = figs.episode_attention_map(summary, np.arange(102.0), "t").data[0]
    assert heat.zmin == 0 and heat.zmax == pytest.approx(0.1)
    assert "p99 = 0.1;" in heat.colorbar.title.text
    fixed = figs.episode_attention_map(summary, np.arange(102.0), "t", scale="fixed").data[0]
    assert fixed.zmax == 1.0 and fixed.colorbar.title.text == "weight<br>(fixed 0–1)"


def test_window_map_on_a_hand_made_pattern_leaves_each_tokens_weight_on_itself_out_of_the_cap():
    n = 15
    w = np.eye(n)                                                  # a token's weight on itself: 1.0 (left out)
    rows, cols = np.tril_indices(n, -1)                            # 105 earlier-token cells
    vals = np.arange(1, 106) / 1000
    vals[:4] = 0                                                   # 101 positive: 0.005..0.105
    w[rows, cols] = vals
    labels = [f"{'Rsa'[i % 3]} {i // 3}" for i in range(n)]
    heat = figs.attention_map(w[None, None], labels, np.ones(n, bool), 0, 0).data[0]
    assert heat.zmax == pytest.approx(0.104)                       # index 99 of 0.005..0.105
    assert "p99 = 0.1;" in heat.colorbar.title.text
    assert figs.attention_map(w[None, None], labels, np.ones(n, bool), 0, 0, scale="fixed").data[0].zmax == 1.0
