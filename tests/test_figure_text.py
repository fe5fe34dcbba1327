"""Names in figures are never markup (issue 26, item 5): a dataset, column, action label or agent name that is HTML,
a plotly template placeholder or TeX shows on a chart as the characters it is, through analysis/publish/figures/text.plain.

Every figure here is made by the real figure functions and catalog entries from hand-made data whose every name is
hostile; every string in the figure's JSON (titles, subtitles, axis titles, tick labels and category values, legend
entries, annotations, bar text, hover templates and the custom data they show) is checked: no tag plotly would
render, no `%{...}` of the user's, no `$` (TeX), and the hostile names still shown (escaped, not dropped)."""
from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.publish import catalog
from analysis.publish.figures.text import plain
from models import load_agent
from trajectories import load_dataset

ROOT = Path(__file__).resolve().parent.parent
AGENTS, DATA = ROOT / "sample_data/agents", ROOT / "sample_data/datasets"


def evil(tag: str) -> str:
    """A name that is a link, a styled span, a template placeholder and TeX at once."""
    return (f'<a href="https://evil.example/{tag}">{tag}</a><span style="color:red">%{{meta}}</span>'
            f'$\\href{{https://evil.example}}{{{tag}}}$')


SOURCE = evil("file") + ".npz"
TAG = re.compile(r"<\s*/?\s*(a|span|b|i|em|sup|sub|br|img|svg)\b", re.I)


def strings(obj, path: str = ""):
    """(path, string) for every string in a figure's JSON, its template (the code's own styling) left out."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if path == "layout" and k == "template":
                continue
            yield from strings(v, f"{path}.{k}" if path else k)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from strings(v, f"{path}[{i}]")
    elif isinstance(obj, np.ndarray) and obj.dtype.kind in "OUS":
        yield from strings(obj.tolist(), path)
    elif isinstance(obj, str):
        yield path, obj


def user_markup(s: str) -> list[str]:
    """What in s came from a hostile name and would be read as markup: a tag other than the code's own <br>, <sup>,
    <b>, <extra> (the hostile names carry <a> and <span>), the user's placeholder, or TeX."""
    bad = [m.group(0) for m in TAG.finditer(s) if m.group(1).lower() in ("a", "span", "img", "svg")]
    if "%{meta" in s:
        bad.append("%{meta}")
    if "$" in s:
        bad.append("$")
    if "evil.example" in s and "&lt;a href" not in s and "&#36;" not in s:
        bad.append("a hostile name shown without its escapes")
    return bad


def check(fig, *, shows: bool = True) -> None:
    spec = fig if isinstance(fig, dict) else fig.to_plotly_json()
    found = [(p, s, user_markup(s)) for p, s in strings(spec)]
    bad = [(p, s[:160], b) for p, s, b in found if b]
    assert not bad, bad[:6]
    if shows:   # the names reached the figure and are shown escaped
        assert any("&lt;a href=&quot;" in s or '&lt;a href="' in s for _, s, _ in found), \
            "no hostile name in the figure: the test checks nothing"


# ---- hostile data -------------------------------------------------------------------------------------------------

def _hostile(ds, episodes, **extra):
    one = ds.select(list(episodes))
    return dataclasses.replace(one, obs_names=[evil(f"o{i}") for i in range(one.obs_dim)],
                               act_names=None if one.discrete else [evil(f"a{i}") for i in range(one.act_dim)],
                               source=SOURCE, **extra)


@pytest.fixture(scope="module")
def cartpole():
    ds = load_dataset(DATA / "cartpole.npz")
    return _hostile(ds, range(3), metadata={**ds.metadata, "action_labels": [evil("left"), evil("right")]})


@pytest.fixture(scope="module")
def pendulum():
    return _hostile(load_dataset(DATA / "pendulum.npz"), range(3))


@pytest.fixture(scope="module")
def dt():
    return load_agent(AGENTS / "cartpole-dt")


@pytest.fixture(scope="module")
def tt():
    return load_agent(AGENTS / "pendulum-tt")


@pytest.fixture(scope="module")
def dynamics(tmp_path_factory):
    """The shipped one-step dynamics model, its config naming hostile training data (model_label shows it)."""
    d = tmp_path_factory.mktemp("agent") / "dyn"
    shutil.copytree(AGENTS / "pendulum-dynamics", d)
    c = json.loads((d / "config.json").read_text())
    c["dataset"]["name"] = evil("trained-on")
    (d / "config.json").write_text(json.dumps(c))
    return load_agent(d)


# ---- the helper ---------------------------------------------------------------------------------------------------

def test_plain_escapes_markup_placeholders_and_tex_and_nothing_else():
    assert plain('<a href="x">y</a>') == '&lt;a href="x"&gt;y&lt;/a&gt;'
    assert plain("a & b") == "a &amp; b"
    assert plain("&lt;") == "&amp;lt;"              # an entity in a name shows as written
    assert plain("%{customdata[0]}") == "&#37;{customdata[0]}"
    assert plain("$x$") == "&#36;x&#36;"
    for ordinary in ("obs_0", "cart velocity (m/s)", "50% quantile", "{a}", "CartPole-v1", "left · right"):
        assert plain(ordinary) == ordinary
    assert plain(3) == "3"


# ---- figure functions and catalog entries -------------------------------------------------------------------------

@pytest.mark.parametrize("name,params", [("returns_histogram", {}), ("episode_timeline", {"episode": 1})])
def test_dataset_entries(cartpole, name, params):
    check(catalog.make(name, None, cartpole, **params).figure)


def test_episode_signals_names_and_action_labels(cartpole):
    from analysis.publish.figures import episode_signals

    ep = cartpole.episode(0)
    check(episode_signals(ep.observations, cartpole.obs_names, "Observations", "value"))
    labels = cartpole.metadata["action_labels"]
    check(episode_signals(ep.actions, [evil("act")], "Actions", "action", labels))


# figures that draw no dataset or agent name today (token labels, layers and heads only): checked all the same
NAMELESS = {"attention_map", "attention_rollout", "patching_positions", "patching_heads", "direct_logit_attribution",
            "logit_lens", "rtg_shift_replay"}


@pytest.mark.parametrize("name,params", [
    ("attention_map", {"episode": 0, "step": 10}),
    ("attention_rollout", {"episode": 0, "step": 10}),
    ("attribution_timesteps", {"episode": 0, "step": 10, "method": "saliency"}),
    ("attribution_features", {"episode": 0, "step": 10, "method": "saliency"}),
    ("patching_positions", {"episode": 0, "step": 6, "corrupt": "rtg", "rtg_shift": -50.0, "context": 4}),
    ("patching_heads", {"episode": 0, "step": 6, "corrupt": "episode", "context": 4}),
    ("direct_logit_attribution", {"episode": 0, "step": 6}),
    ("logit_lens", {"episode": 0, "max_steps": 8}),
    ("embedding", {"method": "pca", "colour_by": "action", "max_points": 200}),
    ("ablation", {"n_steps": 64}),
    ("context_accuracy", {"n_steps": 64, "references": False, "mlp_steps": 0}),
    ("rtg_shift_replay", {"episode": 0, "shifts": [-20.0, 0.0]}),
])
def test_dt_entries(dt, cartpole, name, params):
    check(catalog.make(name, dt, cartpole, **params).figure, shows=name not in NAMELESS)


def test_embedding_action_names(dt, cartpole):
    from analysis.interp.embeddings import embed
    from analysis.publish.figures import embedding_scatter

    res = embed(dt, cartpole, "pca", 200, 0)
    check(embedding_scatter(res, "action", f"Hidden states — {plain(cartpole.source)}",
                            action_names=cartpole.metadata["action_labels"]))


@pytest.mark.parametrize("name,params", [
    ("predicted_vs_real", {"episode": 0, "start": 5, "horizon": 4}),
    ("prediction_error", {"horizons": 3, "n_starts": 8}),
    ("prediction_error_compare", {"horizons": 3, "n_starts": 8, "label": evil("label")}),
    ("tt_attention_dims", {"n_windows": 4}),
    ("tt_ablation", {"n_windows": 8}),
    ("tt_patching_heads", {"episode": 0, "step": 6}),
])
def test_tt_entries(tt, pendulum, name, params):
    check(catalog.make(name, tt, pendulum, **params).figure)


def test_an_agent_naming_hostile_training_data(dynamics, pendulum):
    fig = catalog.make("predicted_vs_real", dynamics, pendulum, episode=0, start=5, horizon=4).figure
    check(fig)
    assert "&lt;a href=&quot;" in fig.layout.title.text or "&lt;a href=" in fig.layout.title.text


def test_episode_video_preview(pendulum):
    check(catalog.make("episode_video", None, pendulum, episode=0, steps=2, max_frames=1).figure)


def test_live_proposal_labels():
    from analysis.publish.figures import live

    check(live.proposal(np.array([0.25, 0.75]), True, [evil("left"), evil("right")], taken=1))
    check(live.proposal(np.array([0.5]), False, [evil("torque")]))


def test_compare_labels(dt, cartpole):
    from analysis.publish.compare_mode import overlay, side_by_side

    a = catalog.make("attention_token_types", dt, cartpole, episode=0, step=10).figure
    check(side_by_side(a, a, evil("agent-a"), evil("agent-b"), with_difference=True))
    p = catalog.make("rtg_shift_replay", dt, cartpole, episode=0, shifts=[0.0]).figure
    q = catalog.make("rtg_shift_replay", dt, cartpole, episode=0, shifts=[10.0]).figure
    check(overlay(p, q, evil("agent-a"), evil("agent-b")))


# ---- pages: an uploaded file with hostile name and columns --------------------------------------------------------

def _csv() -> bytes:
    names = [evil(f"col{i}") for i in range(4)]
    rows = [{"episode": e, "step": t, **{f"obs_{n}": v for n, v in zip(names, (t * 0.1, 0.2, -t * 0.05, 0.01 * e))},
             "action": t % 2, "reward": 1.0} for e in range(3) for t in range(12)]
    return pd.DataFrame(rows).to_csv(index=False).encode()


def test_home_and_dataset_pages_with_a_hostile_upload():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.run()
    upload = '<a href="https:evil.example">x</a>%{meta}$x$.csv'
    at.file_uploader(key="upload_dataset").upload(upload, _csv(), "text/csv").run()
    assert not at.exception, at.exception
    charts = at.get("plotly_chart")
    assert charts, "the home page drew no chart"
    for c in charts:
        check(json.loads(c.proto.spec))
    at.switch_page("views/1_Dataset.py").run()
    assert not at.exception, at.exception
    charts = at.get("plotly_chart")
    assert len(charts) >= 3
    for c in charts:
        check(json.loads(c.proto.spec), shows=False)
    assert any("&lt;a href" in s for c in charts for _, s in strings(json.loads(c.proto.spec)))


def test_cli_inspect_histogram_title(tmp_path, monkeypatch, capsys):
    import analysis.publish.export
    import cli

    path = tmp_path / '<a href="https:evil.example">x<%{meta}$x$.npz'
    shutil.copy(DATA / "cartpole.npz", path)
    drawn = []
    monkeypatch.setattr(analysis.publish.export, "write_figure", lambda fig, out: drawn.append(fig) or out)
    assert cli.main(["inspect", str(path), "--histogram", str(tmp_path / "h.html")]) == 0
    assert len(drawn) == 1
    check(drawn[0])
