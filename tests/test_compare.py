"""Compare mode (analysis/publish/compare_mode.py, ui/compare.py, cli.py export --compare): the same agent twice differs by exactly
zero; the randomized copy differs, is deterministic by seed and is the model behind the attribution pages'
randomized baseline; the panels share axes where both agents fill them, stack in rows when three, and keep their colour
bars, subtitles and exports readable; the URL reproduces the choice; bundles and
the CLI carry both agents; bad input is one sentence."""
import io
import json
import re
import shlex
import zipfile

import numpy as np
import pandas as pd
import pytest
import plotly.graph_objects as go
import torch
from streamlit.testing.v1 import AppTest

from analysis.publish import catalog
from analysis.publish.compare_mode import DIFF, RANDOMIZED, CompareError, compare, randomized_agent, spec
from analysis.publish.export import manifest
from analysis.core.identity import agent_key, stamp_agent
from cli import build_parser, main
from models import load_agent
from trajectories import load_dataset

from conftest import ROOT

AGENTS = ROOT / "sample_data/agents"
DATA = ROOT / "sample_data/datasets"
PAGES = ROOT / "views"


@pytest.fixture(scope="module")
def dt():
    return stamp_agent(load_agent(AGENTS / "cartpole-dt").eval())


@pytest.fixture(scope="module")
def cartpole():
    return load_dataset(DATA / "cartpole.npz")


def diff_values(f, name) -> pd.DataFrame:
    d = f.data[f.data["agent"] == DIFF]
    values = [c for c in d.columns if pd.api.types.is_float_dtype(d[c]) and c not in spec(name).keys]
    return d[values]


@pytest.mark.parametrize("name, params", [("attention_map", dict(episode=3, step=25)),
                                          ("attention_steps_back", dict(episode=3, step=25)),
                                          ("attention_episode", dict(episode=3)),
                                          ("attribution_timesteps", dict(episode=0, step=20))])
def test_the_same_agent_twice_differs_by_exactly_zero(dt, cartpole, name, params):
    f = compare(name, dt, dt, cartpole, "A", "B", **params)
    alone = catalog.make(name, dt, cartpole, **params)
    assert list(f.data["agent"].unique()) == ["A", "B", DIFF]
    assert (f.data["agent"] == DIFF).sum() == len(alone.data) > 0
    d = diff_values(f, name)
    assert d.shape[1] >= 1 and (d.to_numpy() == 0).all()
    # zeros everywhere: no B − A panel of them, a line under the title says so (the CSV keeps the exact zeros)
    drawn = [t for t in f.figure.data if (t.hovertemplate or "").count("B − A")]
    assert not drawn and f"{DIFF} is 0 at every point for " in f.figure.layout.title.text
    assert f.params == {**alone.params, "compare": "B"}


def test_randomized_agent_differs_and_is_deterministic_by_seed(dt):
    from analysis.core.cache import OBJECTS
    rnd = randomized_agent(dt, 0)
    assert randomized_agent(dt, 0) is rnd                                   # one per agent and seed
    assert rnd.config == dt.config and agent_key(rnd) != agent_key(dt)
    a, b = dt.state_dict(), rnd.state_dict()
    assert a.keys() == b.keys() and any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())
    OBJECTS.drop("randomized_agent")
    again = randomized_agent(dt, 0)
    assert again is not rnd and agent_key(again) == agent_key(rnd)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in b.items())
    assert agent_key(randomized_agent(dt, 1)) != agent_key(rnd)


def test_randomized_agent_is_the_attribution_baselines_model(dt, cartpole):
    """The randomized copy is the re-initialised model the Credit assignment page draws beside every map (same seed): its own
    credit equals the first agent's randomized columns."""
    alone = catalog.make("attribution_timesteps", dt, cartpole, episode=0, step=20).data
    rnd = catalog.make("attribution_timesteps", randomized_agent(dt, 0), cartpole, episode=0, step=20).data
    for col in ("return-to-go", "state", "action", "step_share"):
        np.testing.assert_allclose(rnd[col], alone[f"randomized_{col}"], rtol=1e-4, atol=1e-6)


def test_side_by_side_panels_share_axes_and_colour_scale(dt, cartpole):
    rnd = randomized_agent(dt, 0)
    f = compare("attention_map", dt, rnd, cartpole, "cartpole-dt", "randomized copy", episode=3, step=25,
                axes="shared")
    lay = f.figure.layout
    (a0, a1), (b0, b1), (d0, d1) = lay.yaxis.domain, lay.yaxis2.domain, lay.yaxis3.domain
    assert 0 <= d0 < d1 < b0 < b1 < a0 < a1 <= 1            # three rows, top to bottom (issue 27: no titles overlap)
    assert lay.yaxis2.matches == "y" and lay.xaxis2.matches == "x"                 # B on A's axes
    assert lay.yaxis3.matches == "y"                                             # the same token grid for B − A
    ha, hb, hd = f.figure.data
    assert (ha.zmin, ha.zmax) == (hb.zmin, hb.zmax) and hb.showscale is False      # one colour scale for A and B
    np.testing.assert_array_equal(np.asarray(hd.z), np.asarray(hb.z, float) - np.asarray(ha.z, float))
    assert np.abs(np.asarray(hd.z, float)).max() > 0.05                            # a randomized model looks elsewhere
    rows = f.data.set_index(["agent", "query", "key"])["weight"]
    np.testing.assert_allclose(rows[DIFF], rows["randomized copy"] - rows["cartpole-dt"], atol=1e-7)
    assert [a.text for a in lay.annotations][-3:] == ["<b>cartpole-dt</b>", "<b>randomized copy</b>", f"<b>{DIFF}</b>"]
    # a figure where a difference means nothing: two panels, no difference rows
    g = compare("rtg_shift_replay", dt, rnd, cartpole, "A", "B", episode=0)
    assert g.figure.layout.yaxis2.matches == "y" and "xaxis3" not in g.figure.layout.to_plotly_json()
    assert set(g.data["agent"]) == {"A", "B"} and g.params["shifts"] == catalog.make("rtg_shift_replay", dt, cartpole).params["shifts"]


def test_overlay_draws_both_predictions_against_one_real_trace(dt, cartpole):
    rnd = randomized_agent(dt, 0)
    f = compare("predicted_vs_real", dt, rnd, cartpole, "A", "B", episode=0, start=10, horizon=10)
    names = [t.name for t in f.figure.data]
    assert names.count("logged") == 2 and "A · predicted" in names and "B · predicted" in names   # one per feature row
    assert "xaxis2" not in f.figure.layout.to_plotly_json() or f.figure.layout.xaxis2.domain[0] == 0
    sweep = compare("rtg_sweep_returns", dt, rnd, cartpole, "A", "B", targets=[25, 500], episodes=1)
    means = [t for t in sweep.figure.data if t.name in ("A · mean", "B · mean")]
    assert [list(t.x) for t in means] == [[25, 500], [25, 500]]                  # the same targets on one axis
    assert [t.name for t in sweep.figure.data].count("achieved = target") == 1


def test_bad_input_is_one_sentence(dt, cartpole):
    tt = load_agent(AGENTS / "pendulum-tt")
    with pytest.raises(CompareError, match=r"B cannot be compared with A on cartpole.npz: cartpole.npz has 4 observation "
                                           r"features but the tt agent expects 3 .* Compare with an agent that reads 4 "
                                           r"observation features and 2 discrete actions"):
        compare("attention_map", dt, tt, cartpole, "A", "B", episode=3, step=25)
    with pytest.raises(CompareError, match="draws the dataset alone"):
        compare("returns_histogram", dt, dt, cartpole)
    mlp = load_agent(AGENTS / "cartpole-mlp")
    with pytest.raises(CompareError, match="B cannot draw attention_map beside A: this attention view needs a Decision"):
        compare("attention_map", dt, mlp, cartpole, "A", "B", episode=3, step=25)


def test_manifest_names_both_agents_and_remakes_with_compare(dt, cartpole):
    f = compare("attention_rollout", dt, randomized_agent(dt), cartpole, "cartpole-dt", "randomized copy of cartpole-dt",
                episode=3, step=25)
    m = manifest([f], dt, cartpole, "sample_data/agents/cartpole-dt", "sample_data/datasets/cartpole.npz",
                 compare={"agent": randomized_agent(dt), "name": "randomized copy of cartpole-dt", "path": RANDOMIZED})
    assert m["agent"]["path"] == "sample_data/agents/cartpole-dt" and m["compare"]["path"] == RANDOMIZED
    assert m["compare"]["name"] == "randomized copy of cartpole-dt" and m["compare"]["randomized_from"]["seed"] == 0
    args = build_parser().parse_args(shlex.split(m["figures"][0]["remake"])[2:])
    assert args.compare == RANDOMIZED and args.agent == "sample_data/agents/cartpole-dt" and "compare=" not in str(args.param)
    upload = manifest([f], dt, cartpole, "sample_data/agents/cartpole-dt", None,
                      compare={"agent": randomized_agent(dt), "name": "upload: mine", "path": None})
    assert "--compare 'upload: mine'" in upload["figures"][0]["remake"] and "has no file to name" in upload["compare"]["notes"][0]


def test_cli_export_compare_writes_both_agents_and_a_remake_line(tmp_path, capsys):
    out = tmp_path / "b.zip"
    argv = ["export", "--figure", "attention_steps_back", "--agent", str(AGENTS / "cartpole-dt"), "--compare", RANDOMIZED,
            "--param", "episode=3", "--param", "step=25", "--out", str(out), "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["compare"] == RANDOMIZED and result["params"]["compare"] == "randomized copy of cartpole-dt"
    z = zipfile.ZipFile(out)
    assert {"attention_steps_back.png", "attention_steps_back.csv", "manifest.json"} <= set(z.namelist())
    data = pd.read_csv(io.BytesIO(z.read("attention_steps_back.csv")))
    assert list(data["agent"].unique()) == ["cartpole-dt", "randomized copy of cartpole-dt", DIFF]
    m = json.loads(z.read("manifest.json"))
    assert m["compare"]["name"] == "randomized copy of cartpole-dt" and m["agent"]["path"].endswith("cartpole-dt")
    remake = shlex.split(m["figures"][0]["remake"])
    assert remake[remake.index("--compare") + 1] == RANDOMIZED
    csv = tmp_path / "again.csv"
    remake[remake.index("--out") + 1], remake[remake.index("--format") + 1] = str(csv), "csv"
    assert main(remake[2:]) == 0
    assert csv.read_bytes() == z.read("attention_steps_back.csv")               # the remake line gives the same data


@pytest.mark.parametrize("argv, message", [
    (["--figure", "attention_map", "--agent", str(AGENTS / "cartpole-dt"), "--compare", str(AGENTS / "pendulum-tt")],
     "--compare pendulum-tt cannot be compared with cartpole-dt on cartpole.npz: cartpole.npz has 4 observation features "
     "but the tt agent expects 3"),
    (["--figure", "returns_histogram", "--data", str(DATA / "cartpole.npz"), "--compare", RANDOMIZED],
     "figure 'returns_histogram' draws the dataset alone, so --compare has no second agent to draw"),
    (["--figure", "episode_timeline", "--data", str(DATA / "cartpole.npz"), "--compare", RANDOMIZED],
     "draws the dataset alone"),
])
def test_cli_compare_bad_input_is_one_sentence(tmp_path, capsys, argv, message):
    assert main(["export", *argv, "--out", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1


def _page(name: str, query: dict | None = None, **state) -> AppTest:
    at = AppTest.from_file(str(PAGES / name), default_timeout=180)
    at.session_state["agent"], at.session_state["dataset"] = "cartpole-dt", "cartpole"
    for k, v in state.items():
        at.session_state[k] = v
    for k, v in (query or {}).items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, at.exception
    return at


def _chart(at, i: int) -> dict:
    return json.loads(at.get("plotly_chart")[i].proto.spec)


def test_url_reproduces_the_compare_choice_on_the_attention_page(dt, cartpole):
    from test_page_attention import arr

    at = _page("2_Attention.py", {"compare": RANDOMIZED}, att_episode=3, att_step=25)
    box = at.selectbox(key="compare_select")
    assert box.value == RANDOMIZED and box.options == ["nothing (this agent alone)", "randomized copy of cartpole-dt"]
    assert any("Comparing with **randomized copy of cartpole-dt**" in c.value for c in at.caption)
    page_map = _chart(at, 3)
    want = compare("attention_map", dt, randomized_agent(dt), cartpole, "cartpole-dt", "randomized copy of cartpole-dt",
                   episode=3, step=25, layer=2, head=None).figure
    assert len(page_map["data"]) == 3 and page_map["layout"]["yaxis2"]["matches"] == "y"
    for got, made in zip(page_map["data"], json.loads(want.to_json())["data"]):
        np.testing.assert_allclose(arr(got["z"]).astype(float), arr(made["z"]).astype(float))
    box.select("").run()                                                         # back to one agent: out of the URL
    assert not at.exception and "compare" not in at.query_params and len(_chart(at, 3)["data"]) == 1


def test_a_compare_choice_that_does_not_fit_is_a_warning_and_resets():
    at = _page("2_Attention.py", {"compare": "pendulum-tt"}, att_episode=3)
    assert [w.value for w in at.warning] == [
        "Cannot compare cartpole-dt with pendulum-tt: cartpole.npz has 4 observation features but the tt agent expects 3 "
        "(it was trained on Pendulum-v1). Compare with an agent (Decision Transformers or Trajectory Transformers) that "
        "reads 4 observation features and 2 discrete actions; loaded here: randomized copy of cartpole-dt."]
    assert at.selectbox(key="compare_select").value == "" and "compare" not in at.query_params
    assert len(at.get("plotly_chart")) == 5 and len(_chart(at, 3)["data"]) == 1   # the first agent's figures, alone


def test_return_conditioning_compares_both_sweeps_on_one_axis():
    at = _page("3_Return_conditioning.py", sweep_episodes=1, sweep_targets="25, 500", compare=RANDOMIZED)
    sweep = _chart(at, 0)
    names = [t.get("name") for t in sweep["data"]]
    assert {"cartpole-dt · mean", "randomized copy of cartpole-dt · mean"} <= set(names)
    assert "xaxis2" not in sweep["layout"]


def test_credit_and_predicted_vs_real_pages_compare_every_figure():
    at = _page("4_Credit_assignment.py", {"compare": "cartpole-mlp"}, attr_episode=0, attr_step=20)
    assert at.selectbox(key="compare_select").value == "cartpole-mlp"
    for i in range(2):   # the per-timestep and per-feature maps, each beside cartpole-mlp's
        headers = [a.get("text") for a in _chart(at, i)["layout"]["annotations"]]
        assert "<b>cartpole-dt</b>" in headers and "<b>cartpole-mlp</b>" in headers
    at = AppTest.from_file(str(PAGES / "5_Predicted_vs_real.py"), default_timeout=180)
    at.session_state["agent"], at.session_state["dataset"] = "pendulum-tt", "pendulum"
    at.session_state["pvr_starts"], at.session_state["pvr_others"] = 64, []
    at.query_params["compare"] = "pendulum-dynamics"
    at.run()
    assert not at.exception, at.exception
    names = [t.get("name") for t in _chart(at, 0)["data"]]
    assert "logged" in names and {"pendulum-tt · predicted", "pendulum-dynamics · predicted"} <= set(names)
    assert "<b>pendulum-dynamics</b>" in [a.get("text") for a in _chart(at, 1)["layout"]["annotations"]]


def test_an_uploaded_second_agent_keeps_the_comparison_in_the_session(dt, cartpole):
    from dataclasses import replace

    from ui.page import Selection

    a = Selection("cartpole-dt", dt, "cartpole", cartpole)
    upload = Selection("upload: mine.zip", dt, "cartpole", cartpole)
    both = replace(a, other=upload, key="")
    assert not a.private and both.private and both.key != a.key                  # cached apart, dropped with the session
    assert Selection("randomized copy of upload: mine.zip", randomized_agent(dt), "cartpole", cartpole).private


# ---- layouts that read (issue 27, item 4) --------------------------------------------------------------------------
from analysis.publish.compare_panels import COLUMN_WIDTH, FILL, SIGN_COLOURS, fills, side_by_side, split_titles  # noqa: E402


def _domains(lay, letter: str) -> dict[str, tuple]:
    """Every axis's domain by its trace reference ("x", "x2", ...)."""
    out = {}
    for k, v in lay.to_plotly_json().items():
        if k.startswith(f"{letter}axis"):
            out[letter + k[len(letter) + 4:]] = tuple(v.get("domain", (0.0, 1.0)))
    return out


def _bars(fig) -> list[tuple]:
    """Every colour bar a figure shows: (bar, the traces on its scale: its own and those whose scale is hidden with
    the same range, a shared scale's other panel)."""
    lay = fig.layout.to_plotly_json()
    scales = []   # (shown, range, bar, traces)
    for t in fig.data:
        if t.type in ("heatmap", "contour") and not t.coloraxis:
            scales.append((t.showscale is not False, (t.zmin, t.zmax), t.colorbar.to_plotly_json(), [t]))
    for k, v in lay.items():
        on = [t for t in fig.data if getattr(t, "coloraxis", None) == k]
        if k.startswith("coloraxis") and on:
            scales.append((v.get("showscale", True) is not False, (v.get("cmin"), v.get("cmax")), v.get("colorbar", {}), on))
    hidden = [(r, ts) for shown, r, _, ts in scales if not shown]
    return [(bar, ts + [t for r2, ts2 in hidden if r2 == r for t in ts2]) for shown, r, bar, ts in scales if shown]


def _panel_of(fig, t) -> tuple:
    """The box (x0, x1, y0, y1, paper) of the axes a trace is drawn on."""
    xd, yd = _domains(fig.layout, "x")[t.xaxis or "x"], _domains(fig.layout, "y")[t.yaxis or "y"]
    return xd[0], xd[1], yd[0], yd[1]


def assert_bars_beside_their_panels(fig):
    """Each colour bar right of (and within 0.08 of) the x extent of the traces it colours, centred over their y
    extent, and over no other panel's plot area."""
    boxes = {_panel_of(fig, t) for t in fig.data}
    bars = _bars(fig)
    for bar, traces in bars:
        own = [_panel_of(fig, t) for t in traces]
        x1 = max(b[1] for b in own)
        y0, y1 = min(b[2] for b in own), max(b[3] for b in own)
        assert x1 <= bar["x"] <= x1 + 0.08 and bar.get("xanchor") == "left", (bar, own)
        assert y0 <= bar["y"] <= y1 and bar["len"] <= y1 - y0 + 1e-9, (bar, own)
        for b in boxes - set(own):   # never on a neighbour's plot area
            assert not (b[0] <= bar["x"] <= b[1] and b[2] <= bar["y"] <= b[3]), (bar, b)
    return bars


def test_three_panels_stack_in_rows_and_each_colour_bar_stands_beside_its_own(dt, cartpole):
    rnd = randomized_agent(dt, 0)
    f = compare("attention_map", dt, rnd, cartpole, "cartpole-dt", "randomized copy", episode=3, step=25)
    lay, (ha, hb, hd) = f.figure.layout, f.figure.data
    (a0, a1), (b0, b1), (d0, d1) = lay.yaxis.domain, lay.yaxis2.domain, lay.yaxis3.domain
    assert 0 <= d0 < d1 < b0 < b1 < a0 < a1 <= 1                        # A over B over B − A, one per row
    assert lay.xaxis.domain == lay.xaxis2.domain == lay.xaxis3.domain
    # the difference: a diverging scale centred on 0, its own colour bar beside its own panel, named B − A weight
    assert hd.colorscale == go_colorscale("RdBu_r") and hd.zmid == 0 and hd.zmin == -hd.zmax > -1
    assert np.abs(np.asarray(hd.z, float)).max() == pytest.approx(hd.zmax)
    assert hd.showscale is not False and hd.colorbar.title.text == f"{DIFF} weight"
    assert lay.xaxis3.domain[1] <= hd.colorbar.x <= lay.xaxis3.domain[1] + 0.08
    assert d0 <= hd.colorbar.y <= d1 and hd.colorbar.len <= d1 - d0 + 1e-9
    bars = assert_bars_beside_their_panels(f.figure)
    assert len(bars) >= 2
    assert f.figure.layout.width <= 1800 and f.figure.layout.width * 2 <= 1800   # 2x export: a blog column


def go_colorscale(name: str):
    import plotly.graph_objects as go
    return go.Heatmap(colorscale=name).colorscale


def test_the_auto_rule_shares_only_where_both_fill_the_shared_range():
    assert FILL == 0.25
    assert fills((0, 1), (0, 0.9)) and fills((0, 1), (0.2, 0.8)) and fills((3, 3), (3, 3)) and fills(None, (0, 1))
    assert fills((0, 1), (0, 0.3)) and not fills((0, 1), (0, 0.2))   # a quarter of the shared range: still readable
    assert not fills((0, 1), (0, 0.1))           # weights up to 0.1 on a 0–1 scale: one corner of it
    assert not fills((0, 19), (19, 19))          # a K=1 window on a K=20 step axis
    assert not fills((0, 1), (5, 6))             # apart
    import plotly.graph_objects as go
    a = go.Figure(go.Bar(x=["p", "q", "r"], y=[1.0, 2.0, 3.0], name="v"), layout=dict(yaxis_title="value"))
    near = go.Figure(go.Bar(x=["p", "q", "r"], y=[1.5, 2.0, 2.5], name="v"), layout=dict(yaxis_title="value"))
    tiny = go.Figure(go.Bar(x=["p", "q", "r"], y=[0.01, 0.02, 0.03], name="v"), layout=dict(yaxis_title="value"))
    auto_near, auto_tiny = side_by_side(a, near, "A", "B"), side_by_side(a, tiny, "A", "B")
    assert auto_near.layout.yaxis2.matches == "y" and auto_near.layout.xaxis2.matches == "x"
    assert auto_tiny.layout.yaxis2.matches is None and auto_tiny.layout.xaxis2.matches == "x"   # same categories
    assert side_by_side(a, tiny, "A", "B", axes="shared").layout.yaxis2.matches == "y"
    assert side_by_side(a, near, "A", "B", axes="independent").layout.yaxis2.matches is None
    with pytest.raises(ValueError, match="axes must be one of auto, shared, independent"):
        side_by_side(a, near, axes="both")


def test_independent_axes_give_each_agent_its_own_range(dt, cartpole):
    rnd = randomized_agent(dt, 0)
    shared = compare("attention_token_types", dt, rnd, cartpole, "A", "B", episode=3, step=25, axes="shared")
    own = compare("attention_token_types", dt, rnd, cartpole, "A", "B", episode=3, step=25, axes="independent")
    assert shared.figure.layout.yaxis2.matches == "y" and own.figure.layout.yaxis2.matches is None
    assert own.params["axes"] == "independent" and "axes" not in compare(
        "attention_token_types", dt, rnd, cartpole, "A", "B", episode=3, step=25).params
    full = own.figure.full_figure_for_development(warn=False).layout       # the ranges plotly draws
    ra, rb = full.yaxis.range, full.yaxis2.range
    top = lambda k: own.data[(own.data["agent"] == k)]["share"].max()   # noqa: E731  (heads averaged: below it)
    assert ra != rb and rb[1] < ra[1] or ra[1] < rb[1]
    assert max(ra[1], rb[1]) >= max(top("A"), top("B")) * 0.5
    drawn = shared.figure.full_figure_for_development(warn=False).layout
    assert drawn.yaxis.range == drawn.yaxis2.range
    # heatmaps: independent colour scales, one bar for each panel, beside it
    m = compare("attention_map", dt, rnd, cartpole, "A", "B", episode=3, step=25, axes="independent")
    ha, hb, _ = m.figure.data
    assert (ha.zmin, ha.zmax) != (hb.zmin, hb.zmax) and hb.showscale is not False
    assert m.figure.layout.yaxis2.matches is None
    assert len(assert_bars_beside_their_panels(m.figure)) == 3


def test_auto_keeps_a_one_step_window_readable_beside_a_long_one(dt, cartpole):
    """cartpole-mlp sees one step (K=1), the DT 20: on a shared step axis the MLP's credit would be one sliver."""
    mlp = load_agent(AGENTS / "cartpole-mlp")
    alone = catalog.make("attribution_timesteps", dt, cartpole, episode=0, step=20).figure.layout.to_plotly_json()
    n_a = sum(k.startswith("xaxis") for k in alone)                       # A's x axes: 1..n_a, then B's

    def into_a(fig) -> list[str]:   # B's step axes that follow one of A's
        lay = fig.layout.to_plotly_json()
        return [k for k in lay if k.startswith("xaxis") and n_a < int(k[5:] or 1) <= 2 * n_a
                and lay[k].get("matches") and int(lay[k]["matches"][1:] or 1) <= n_a]

    f = compare("attribution_timesteps", dt, mlp, cartpole, "cartpole-dt", "cartpole-mlp", episode=0, step=20)
    assert into_a(f.figure) == []                                         # each agent's own step axis
    steps = lambda agent: f.data[f.data["agent"] == agent]["step"]       # noqa: E731
    assert steps("cartpole-mlp").nunique() == 1 and steps("cartpole-dt").nunique() >= 20
    shared = compare("attribution_timesteps", dt, mlp, cartpole, "cartpole-dt", "cartpole-mlp", episode=0, step=20,
                     axes="shared")
    assert len(into_a(shared.figure)) == n_a
    assert_bars_beside_their_panels(f.figure)


def _panel_texts(fig) -> dict[str, str]:
    """Each panel header's text -> the subtitle annotation written under it (same place, drawn just below)."""
    anns = [a for a in fig.layout.annotations]
    heads = {(a.x, a.y): a.text for a in anns if a.text.startswith("<b>") and a.text.endswith("</b>")}
    return {heads[(a.x, a.y)]: a.text for a in anns if (a.x, a.y) in heads and a.text != heads[(a.x, a.y)]}


def test_each_panel_subtitle_gives_its_own_agents_values(dt, cartpole):
    rnd = randomized_agent(dt, 0)
    f = compare("attribution_timesteps", dt, rnd, cartpole, "cartpole-dt", "randomized copy", episode=0, step=20)
    alone_a = catalog.make("attribution_timesteps", dt, cartpole, episode=0, step=20)
    alone_b = catalog.make("attribution_timesteps", rnd, cartpole, **{k: v for k, v in alone_a.params.items()})
    _, _, own_a, own_b = split_titles(alone_a.figure.layout.title.to_plotly_json(),
                                      alone_b.figure.layout.title.to_plotly_json())
    value = lambda s: re.search(r"f\(x\) − f\(baseline\) = (-?[\d.e+-]+)", s).group(1)   # noqa: E731
    assert own_a and own_b and value(" ".join(own_a)) != value(" ".join(own_b))   # the two agents' own numbers
    subs = _panel_texts(f.figure)
    assert value(subs["<b>cartpole-dt</b>"].replace("<br>", " ")) == value(" ".join(own_a))
    assert value(subs["<b>randomized copy</b>"].replace("<br>", " ")) == value(" ".join(own_b))
    title = f.figure.layout.title.text
    assert "episode 0, step 20" in title and "f(x)" not in title        # shared in the title, own under each header
    assert "randomized copy minus cartpole-dt" in subs[f"<b>{DIFF}</b>"]


def test_difference_bars_are_coloured_by_sign_with_a_legend(dt, cartpole):
    rnd = randomized_agent(dt, 0)
    f = compare("attention_token_types", dt, rnd, cartpole, "cartpole-dt", "randomized copy", episode=3, step=25)
    diff = [t for t in f.figure.data if t.type == "bar" and "B − A" in (t.hovertemplate or "")]
    assert len(diff) == 3
    signs = []
    for t in diff:
        want = [SIGN_COLOURS["+" if v >= 0 else "-"] for v in np.asarray(t.y, float)]
        assert list(t.marker.color) == want
        signs += want
    assert set(signs) == set(SIGN_COLOURS.values())                     # both signs occur in this pair
    legend = {t.name: t for t in f.figure.data if t.showlegend is not False and t.name}
    assert legend[f"{DIFF} > 0: randomized copy higher"].marker.color == SIGN_COLOURS["+"]
    assert legend[f"{DIFF} < 0: cartpole-dt higher"].marker.color == SIGN_COLOURS["-"]
    # three rows fit MAX_ROWS_PX: the shorter B − A axis puts its title on two lines
    assert f.figure.layout.yaxis3.title.text == f"{DIFF}<br>share of attention"
    assert f.figure.layout.legend.orientation == "h" and f.figure.layout.width <= 900


def test_two_panels_with_short_titles_sit_side_by_side_and_exports_fit_a_blog_column(dt, cartpole, tmp_path):
    import struct

    from analysis.publish.export import figure_bytes

    rnd = randomized_agent(dt, 0)
    g = compare("rtg_shift_replay", dt, rnd, cartpole, "A", "B", episode=0)
    lay = g.figure.layout
    (a0, a1), (b0, b1) = lay.xaxis.domain, lay.xaxis2.domain
    assert 0 <= a0 < a1 < b0 < b1 <= 1 and lay.yaxis.domain == lay.yaxis2.domain
    gap_px = (b0 - a1) * (lay.width - lay.margin.l - lay.margin.r)
    assert gap_px >= lay.margin.l                                        # room for B's ticks and axis title
    sizes = {}
    for name, fig in (("rows", compare("attention_map", dt, rnd, cartpole, "A", "B", episode=3, step=25).figure),
                      ("columns", g.figure),
                      ("overlay", compare("rtg_sweep_returns", dt, rnd, cartpole, "A", "B", targets=[25, 500],
                                          episodes=1).figure)):
        png = figure_bytes(fig, "png")
        sizes[name] = struct.unpack(">II", png[16:24])                  # the PNG's IHDR: width, height
        (tmp_path / f"{name}.png").write_bytes(png)
    assert all(w <= 1800 for w, _ in sizes.values()), sizes
    assert sizes["rows"][1] > sizes["rows"][0]                           # stacked: taller than wide


def test_shared_value_axes_get_one_explicit_range_that_covers_both():
    """A shared value axis carries the union of both agents' extents (stacked bars: their sums), so neither is cut
    (plotly.js autoranges some matched groups to its empty default, -1…4)."""
    import plotly.graph_objects as go

    def stacked(lo, hi):
        return go.Figure([go.Bar(x=["25", "500"], y=lo, name="left"), go.Bar(x=["25", "500"], y=hi, name="right")],
                         layout=dict(barmode="stack", yaxis_title="share"))
    f = side_by_side(stacked([0.5, 0.4], [0.5, 0.6]), stacked([0.3, 0.7], [0.7, 0.3]), "A", "B")
    lo, hi = f.layout.yaxis.range
    assert f.layout.yaxis2.matches == "y" and lo == 0 and 1.0 < hi <= 1.06      # the stacks' sums, not one trace's
    lines = lambda ys: go.Figure(go.Scatter(x=[0, 1, 2], y=ys, name="v"), layout=dict(yaxis_title="v"))   # noqa: E731
    g = side_by_side(lines([0.0, 2.0, 1.0]), lines([0.5, 3.0, 1.0]), "A", "B")
    assert g.layout.yaxis2.matches == "y" and g.layout.yaxis.range[0] < 0 and g.layout.yaxis.range[1] > 3.0


def test_overlay_title_gives_each_agents_own_values():
    import plotly.graph_objects as go

    from analysis.publish.compare_panels import overlay

    def fig(err):
        return go.Figure(go.Scatter(x=[0, 1], y=[err, err], name="predicted"),
                         layout=dict(title=f"Predicted vs real<br><sup>episode 0 · mean error {err}</sup>"))
    f = overlay(fig(0.25), fig(0.75), "agent-a", "agent-b")
    title = f.layout.title.text
    assert "episode 0" in title and "agent-a: mean error 0.25" in title and "agent-b: mean error 0.75" in title
    assert title.count("episode 0") == 1 and f.layout.width <= 900 and f.layout.legend.orientation == "h"


_BOXES_JS = """() => {
  const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
  const all = sel => [...document.querySelectorAll(sel)].filter(e => e.getBoundingClientRect().width > 0).map(box);
  const svg = document.querySelector('.main-svg').getBoundingClientRect();
  return {figure: [svg.left, svg.top, svg.right, svg.bottom], plots: all('.nsewdrag'),
          xtitles: all('[class^="g-x"][class$="title"] text'), ytitles: all('[class^="g-y"][class$="title"] text'),
          bars: all('.colorbar'), headers: all('.annotation-text-g')};
}"""


def _overlap(a, b, slack=1.0) -> bool:
    return a[0] < b[2] - slack and b[0] < a[2] - slack and a[1] < b[3] - slack and b[1] < a[3] - slack


@pytest.mark.slow
@pytest.mark.skipif(not __import__("os").path.exists("/usr/bin/chromium"), reason="needs Debian's chromium")
def test_compare_figures_drawn_in_chromium_have_no_title_or_colour_bar_on_a_neighbour(dt, cartpole, tmp_path):
    """The boxes Chromium draws: no axis title or colour bar on another panel's plot area or on another axis title,
    everything inside the figure, for the layouts compare mode makes (rows, side by side, overlay)."""
    import plotly.graph_objects as go
    from playwright.sync_api import sync_playwright

    from bench.browser_pages import CHROMIUM_ARGS

    rnd = randomized_agent(dt, 0)
    mlp = load_agent(AGENTS / "cartpole-mlp")
    figs = {"map": compare("attention_map", dt, rnd, cartpole, "A", "B", episode=3, step=25),
            "types": compare("attention_token_types", dt, rnd, cartpole, "A", "B", episode=3, step=25),
            "credit_k1": compare("attribution_timesteps", dt, mlp, cartpole, "cartpole-dt", "cartpole-mlp", episode=0,
                                 step=20),
            "replay": compare("rtg_shift_replay", dt, rnd, cartpole, "A", "B", episode=0),
            "sweep": compare("rtg_sweep_returns", dt, rnd, cartpole, "A", "B", targets=[25, 500], episodes=1)}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        for (name, f), width in ((item, w) for item in figs.items() for w in (None, 760, 1100)):
            html = tmp_path / f"{name}.html"   # its export width, and a page's column (the page stretches it)
            html.write_text(go.Figure(f.figure).update_layout(width=width or f.figure.layout.width).to_html(
                include_plotlyjs=True, full_html=True))
            page.goto(html.as_uri())
            page.wait_for_selector(".main-svg")
            b = page.evaluate(_BOXES_JS)
            fx0, fy0, fx1, fy1 = b["figure"]
            for kind in ("xtitles", "ytitles", "bars", "headers"):
                for box in b[kind]:
                    assert fx0 - 1 <= box[0] and box[2] <= fx1 + 1 and fy0 - 1 <= box[1] and box[3] <= fy1 + 1, \
                        (name, kind, box, b["figure"])
            for kind in ("xtitles", "ytitles", "bars"):
                for box in b[kind]:
                    assert not any(_overlap(box, plot) for plot in b["plots"]), (name, kind, box)
            titles = b["xtitles"] + b["ytitles"]
            for i, t in enumerate(titles):
                assert not any(_overlap(t, u) for u in titles[i + 1:]), (name, t)
            assert len(b["plots"]) >= 2 and b["bars"] if name in ("map", "credit_k1") else True
        browser.close()


def test_cli_axes_choice_reaches_the_figure_and_its_remake_line(tmp_path, capsys):
    out = tmp_path / "b.zip"
    argv = ["export", "--figure", "attention_token_types", "--agent", str(AGENTS / "cartpole-dt"), "--compare", RANDOMIZED,
            "--param", "episode=3", "--param", "step=25", "--param", "axes=independent", "--out", str(out), "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["params"]["axes"] == "independent"
    remake = json.loads(zipfile.ZipFile(out).read("manifest.json"))["figures"][0]["remake"]
    assert "--param axes=independent" in remake and "--compare randomized" in remake
    assert main(argv[:-5] + ["--param", "axes=both", "--out", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "axes must be one of auto, shared, independent" in err and len(err.splitlines()) == 1
    assert main(["export", "--figure", "attention_token_types", "--agent", str(AGENTS / "cartpole-dt"), "--param",
                 "axes=shared", "--out", str(tmp_path / "y.csv")]) == 2                 # alone: no axes to share
    assert "not axes" in capsys.readouterr().err


def _heat_over_reward(z, reward):
    """A hand-made attention-episode figure: a heatmap of the agent's weights over the logged reward's bars."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.78, 0.22])
    fig.add_trace(go.Heatmap(z=z, colorbar=dict(title="weight")), 1, 1)
    fig.add_trace(go.Bar(x=np.arange(len(reward)), y=reward, name="reward"), 2, 1)
    fig.update_yaxes(title_text="reward", row=2, col=1)
    fig.update_layout(height=620, title="Where the action token looks", margin=dict(t=60, b=50))
    return fig


def test_a_difference_that_is_zero_everywhere_is_a_line_not_a_row_of_zeros():
    from analysis.publish.compare_panels import MAX_ROWS_PX, combine

    reward = np.r_[np.zeros(9), 1.0]                       # the logged reward: the same data under both agents
    za, zb = np.eye(10)[:5], np.eye(10)[:5] * 0.5
    fig, n_diff = combine(_heat_over_reward(za, reward), _heat_over_reward(zb, reward), "A", "B", True)
    assert n_diff == 2                                     # both pairs subtracted; the heatmap's drawn
    diff = [t for t in fig.data if t.type == "heatmap"][-1]
    assert np.allclose(np.asarray(diff.z, float), zb - za)
    assert [t.type for t in fig.data].count("bar") == 2    # A's and B's rewards; no B − A bars of zeros
    assert "B − A is 0 at every point for reward (the same data for both): not drawn" in fig.layout.title.text
    # three rows of a 620 px figure: each plot shrinks so that the rows fit (the title on top), from 1,300+ px
    rows = fig.layout.height - fig.layout.margin.t - fig.layout.margin.b
    assert rows <= MAX_ROWS_PX + 15 and fig.layout.height <= 900   # each plot at MIN_PLOT_PX: the headers' lines over
    assert fig.layout.yaxis6.visible is False           # B − A's reward axis: nothing drawn on it, no empty ticks
    same, n_same = combine(_heat_over_reward(za, reward), _heat_over_reward(za, reward), "A", "B", True)
    assert n_same == 2 and len(same.data) == 4          # no B − A panel at all
    assert "B − A is 0 at every point for reward, 1 more panel (the same data for both)" in same.layout.title.text
