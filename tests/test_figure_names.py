"""Figures name the data they were computed from and the dataset's own action names (issue 27, item 2).

An upload of CartPole data named my_upload.csv, read by cartpole-dt (trained on cartpole.npz): every figure's text
names my_upload.csv and never cartpole.npz; its legends, ticks and colour bars say push left / push right, not
"action", "action 1" or "action dim 0"."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.publish import catalog
from analysis.publish.figures import labels as L
from models import load_agent
from trajectories import load_dataset

ROOT = Path(__file__).resolve().parent.parent
AGENTS, DATA = ROOT / "sample_data/agents", ROOT / "sample_data/datasets"
UPLOAD = "my_upload.csv"


def texts(fig) -> list[str]:
    """Every string in the figure's JSON but its template."""
    out, stack = [], [fig.to_plotly_json()]
    while stack:
        obj = stack.pop()
        if isinstance(obj, dict):
            stack += [v for k, v in obj.items() if k != "template"]
        elif isinstance(obj, (list, tuple)):
            stack += list(obj)
        elif isinstance(obj, np.ndarray) and obj.dtype.kind in "OUS":
            stack += obj.ravel().tolist()
        elif isinstance(obj, str):
            out.append(obj)
    return out


def joined(fig) -> str:
    return "\n".join(texts(fig))


def uploaded(name: str, episodes, **changes):
    ds = load_dataset(DATA / name)
    return dataclasses.replace(ds.select(list(episodes)), source=UPLOAD, **changes)


@pytest.fixture(scope="module")
def cartpole():
    return uploaded("cartpole.npz", range(3))


@pytest.fixture(scope="module")
def dt():
    agent = load_agent(AGENTS / "cartpole-dt")
    assert agent.config.dataset.get("name") == "cartpole.npz"   # what the figures must not name
    return agent


# ---- the helpers ----------------------------------------------------------------------------------------------------

def test_action_names_come_from_the_dataset_then_its_environment():
    ds = load_dataset(DATA / "cartpole.npz")
    assert L.action_labels(ds) == ["push_left", "push_right"]
    bare = dataclasses.replace(ds, metadata={}, env_id=None)
    assert L.action_labels(bare, 2) == ["action 0", "action 1"]
    assert L.action_labels(bare, 2, env_id="CartPole-v1") == ["push_left", "push_right"]
    own = dataclasses.replace(ds, metadata={"action_labels": ["links", "rechts"]})
    assert L.action_labels(own, 2) == ["links", "rechts"]
    assert L.action_labels(own, 3) == ["action 0", "action 1", "action 2"]   # labels for another action count: unused
    reacher = load_dataset(DATA / "reacher.npz")
    assert L.action_dim_names(reacher, 2) == ["shoulder_torque", "elbow_torque"]
    assert L.action_dim_names(None, 2) == ["action dim 0", "action dim 1"]
    assert L.action_dim_names(None, 1, env_id="Pendulum-v1") == ["torque"]


def test_named_actions_rewrites_an_analysis_label():
    assert L.named_actions("logit of action 1", ["push_left", "push_right"]) == "logit of push right (action 1)"
    assert (L.named_actions("action dimension 1 before tanh", ["shoulder_torque", "elbow_torque"])
            == "elbow torque (action dimension 1) before tanh")
    assert L.named_actions("logit of action 1", ["action 0", "action 1"]) == "logit of action 1"   # no name of its own
    assert L.named_actions("value (return-to-go hidden)", ["a", "b"]) == "value (return-to-go hidden)"


# ---- an upload read by an agent trained on another file -----------------------------------------------------------

@pytest.mark.parametrize("name,params", [
    ("attention_map", {"episode": 0, "step": 10}),
    ("attention_token_types", {"episode": 0, "step": 10}),
    ("attention_rollout", {"episode": 0, "step": 10}),
    ("attention_episode", {"episode": 1}),
    ("attribution_timesteps", {"episode": 0, "step": 10, "method": "saliency"}),
    ("attribution_features", {"episode": 0, "step": 10, "method": "saliency"}),
    ("patching_heads", {"episode": 0, "step": 6, "corrupt": "episode", "context": 4}),
    ("direct_logit_attribution", {"episode": 0, "step": 6, "action": 1}),
    ("logit_lens", {"episode": 0, "max_steps": 8, "action": 1}),
    ("embedding", {"method": "pca", "colour_by": "action", "max_points": 200}),
    ("rtg_shift_replay", {"episode": 0, "shifts": [-20.0, 0.0]}),
    ("ablation", {"n_steps": 64}),
])
def test_dt_figures_name_the_upload_not_the_training_data(dt, cartpole, name, params):
    fig = catalog.make(name, dt, cartpole, **params).figure
    # in the title's text, or (attention_map, whose title text the page's test pins) plotly's own subtitle line
    assert UPLOAD in fig.layout.title.text + (fig.layout.title.subtitle.text or "")
    assert "cartpole.npz" not in joined(fig)


def test_action_names_in_legends_colour_bars_and_titles(dt, cartpole):
    emb = catalog.make("embedding", dt, cartpole, method="pca", colour_by="action", max_points=200).figure
    assert sorted(t.name for t in emb.data) == ["push left", "push right"]
    lens = catalog.make("logit_lens", dt, cartpole, episode=0, max_steps=8, action=1).figure
    bar = lens.data[0].colorbar.title.text
    assert bar.startswith("P(push right)") and bar != "value"
    assert "push right (action 1)" in lens.layout.title.text
    dla = catalog.make("direct_logit_attribution", dt, cartpole, episode=0, step=6, action=1).figure
    assert "logit of push right (action 1)" in dla.layout.title.text
    assert "push right" in dla.layout.xaxis.title.text
    bare = dataclasses.replace(cartpole, metadata={}, env_id=None)   # a CSV keeps neither: the agent's environment's
    emb = catalog.make("embedding", dt, bare, method="pca", colour_by="action", max_points=200).figure
    assert sorted(t.name for t in emb.data) == ["push left", "push right"]
    credit = catalog.make("attribution_timesteps", dt, bare, episode=0, step=10, method="saliency").figure
    assert "(push left, action 0)" in credit.layout.title.text or "(push right, action 1)" in credit.layout.title.text
    feats = catalog.make("attribution_features", dt, bare, episode=0, step=10, method="saliency").figure
    rows = set(feats.data[0].y)
    assert {"a: push left (action 0)", "a: push right (action 1)"} <= rows and "a: action 0" not in rows


def test_sweep_actions_legend_says_the_actions(cartpole):
    from analysis.publish.figures import sweep_actions

    dist = pd.DataFrame({"target_return": [100.0, 100.0, 500.0, 500.0], "action": [0, 1, 0, 1],
                         "share": [0.4, 0.6, 0.5, 0.5]})
    fig = sweep_actions(dist, True, "Actions", L.action_labels(cartpole, 2))
    assert [t.name for t in fig.data] == ["push left", "push right"]
    reacher = load_dataset(DATA / "reacher.npz")
    cont = pd.DataFrame({"target_return": [-10.0, -5.0] * 2, "dim": [0, 0, 1, 1], "q25": [0.0] * 4, "q50": [0.1] * 4,
                         "q75": [0.2] * 4})
    fig = sweep_actions(cont, False, "Actions", L.action_dim_names(reacher, 2))
    assert [t.name for t in fig.data if t.showlegend is not False] == ["shoulder torque (median, IQR)",
                                                                        "elbow torque (median, IQR)"]


def test_predictions_name_the_data_not_the_model_training_data():
    dyn = load_agent(AGENTS / "pendulum-dynamics")
    assert dyn.config.dataset.get("name") == "pendulum.npz"
    ds = uploaded("pendulum.npz", range(2))
    fig = catalog.make("predicted_vs_real", dyn, ds, episode=0, start=5, horizon=4).figure
    assert fig.layout.title.text.startswith(f"Predicted vs real — dynamics model, episode 0 of {UPLOAD}")
    err = catalog.make("prediction_error", dyn, ds, horizons=3, n_starts=8).figure
    assert UPLOAD in err.layout.title.text and [t.name for t in err.data if t.name] == ["dynamics model"]
    for f in (fig, err):
        assert "pendulum.npz" not in joined(f)


def test_continuous_action_names_in_the_shift_replay_and_tt_dimensions():
    pdt = load_agent(AGENTS / "pendulum-dt")
    ds = uploaded("pendulum.npz", range(2))
    fig = catalog.make("rtg_shift_replay", pdt, ds, episode=0, shifts=[-50.0, 0.0]).figure
    assert fig.layout.yaxis.title.text == "torque" and fig.data[-1].name == "logged torque"
    assert UPLOAD in fig.layout.title.text
    tt = load_agent(AGENTS / "pendulum-tt")
    dims = catalog.make("tt_attention_dims", tt, ds, n_windows=4)
    assert list(dims.figure.data[0].x) == ["cos_theta", "sin_theta", "angular_velocity", "torque", "reward", "value"]
    assert UPLOAD in dims.figure.layout.title.text and "torque" in set(dims.data["key_dim"])


def test_episode_video_csv_names_the_actions_through_the_agent(dt, cartpole):
    bare = dataclasses.replace(cartpole, metadata={}, env_id=None)   # what a CSV upload of CartPole carries
    made = catalog.make("episode_video", dt, bare, episode=0, steps=4, max_frames=1)
    want = ["push left" if a == 0 else "push right" for a in bare.episode(0).actions[:4]]
    assert made.data["action"].tolist() == want
    assert UPLOAD in made.figure.layout.title.text


def test_sweep_actions_entry_names_the_actions_of_a_csv_upload(dt, cartpole):
    bare = dataclasses.replace(cartpole, metadata={}, env_id=None)
    fig = catalog.make("rtg_sweep_actions", dt, bare, targets=[25.0], episodes=1).figure
    assert [t.name for t in fig.data] == ["push left", "push right"]   # was "action" and "action 1" (act_names)


def test_bundle_manifest_names_the_upload_and_keeps_the_training_data_apart(dt, cartpole):
    from analysis.publish.export import manifest

    made = catalog.make("attention_map", dt, cartpole, episode=0, step=10)
    m = manifest([made], dt, cartpole, agent_path="sample_data/agents/cartpole-dt", data_path=None)
    assert m["dataset"]["source"] == UPLOAD and m["dataset"]["path"] is None     # an upload has no path to remake from
    assert m["agent"]["trained_on"] == "cartpole.npz"                              # named as what the agent trained on
    assert m["figures"][0]["params"]["scale"] == "data"
