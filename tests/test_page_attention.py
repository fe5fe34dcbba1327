"""AppTest: the Attention and Return conditioning pages render with shipped agents, their widgets change the
figures, they refuse agents they cannot analyse with one sentence, and every figure has its five downloads."""
import base64
import json
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

PAGES = Path(__file__).resolve().parent.parent / "views"


def page(name: str, agent: str, dataset: str, uploads: dict | None = None, query: dict | None = None,
         **state) -> AppTest:
    at = AppTest.from_file(str(PAGES / name), default_timeout=120)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    at.session_state["agent"] = agent
    at.session_state["dataset"] = dataset
    if uploads:
        at.session_state["uploaded_datasets"] = uploads
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    assert not at.exception, at.exception
    return at


def charts(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def arr(v) -> np.ndarray:
    """A plotly JSON array: a list, or plotly's typed array {dtype, bdata[, shape]}."""
    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
        return a.reshape([int(x) for x in str(v["shape"]).split(",")]) if "shape" in v else a
    return np.asarray(v)


def same_as_catalog(chart: dict, name: str, agent: str, dataset: str, **params) -> bool:
    """Every numeric x / y / z array of the page's chart equals the figure `cli.py export` makes (the catalog)."""
    from analysis.publish import catalog
    from models import load_agent
    from trajectories import load_dataset
    from trajectories.samples import sample_datasets

    root = Path(__file__).resolve().parent.parent
    made = catalog.make(name, load_agent(root / "sample_data/agents" / agent), load_dataset(sample_datasets()[dataset]),
                        **params)
    want = json.loads(made.figure.to_json())["data"]
    if len(want) != len(chart["data"]):
        return False
    for got_trace, want_trace in zip(chart["data"], want):
        for key in ("x", "y", "z"):
            if key in want_trace:
                a, b = arr(got_trace.get(key)), arr(want_trace[key])
                if a.dtype.kind in "fiu" and b.dtype.kind in "fiu":
                    if a.shape != b.shape or not np.allclose(a.astype(float), b.astype(float), equal_nan=True):
                        return False
                elif a.tolist() != b.tolist():
                    return False
    return True


def titles(at) -> list[str]:
    """Each chart's title as its figure wrote it (the page wraps it to the column: figures/fit.py keeps the original
    in layout.meta)."""
    return [(c["layout"].get("meta") or {}).get("title") or c["layout"]["title"]["text"] for c in charts(at)]


def downloads(at) -> list[str]:
    return [b.proto.label for b in at.get("download_button")]


def test_attention_page_dt_views_and_step_slider():
    at = page("2_Attention.py", "cartpole-dt", "cartpole", att_episode=3)
    t = titles(at)
    assert t[0].startswith("Where the action token looks over episode 3")
    assert "Attention, layer 3 (heads averaged)<br><sup>episode 3, step 25</sup>" in t
    assert downloads(at).count("PNG") == 5 and downloads(at).count("CSV") == 5
    assert any(label.startswith("Download all 5 figures") for label in downloads(at))
    before = charts(at)[3]
    at.slider(key="att_step").set_value(40).run()
    assert not at.exception
    after = charts(at)[3]
    assert after["layout"]["title"]["text"].endswith("step 40</sup>") and not np.array_equal(arr(after["data"][0]["z"]), arr(before["data"][0]["z"]))


def test_attention_page_tt_view():
    at = page("2_Attention.py", "pendulum-tt", "pendulum")
    assert titles(at)[0].startswith("Trajectory Transformer attention, layer 1")
    at.selectbox(key="tt_layer").select(2).run()
    assert titles(at)[0].startswith("Trajectory Transformer attention, layer 3") and not at.exception


def test_attention_page_refuses_an_mlp_in_one_sentence():
    at = page("2_Attention.py", "cartpole-mlp", "cartpole")
    assert [i.value for i in at.info][0].startswith("This page needs a Decision Transformer or a Trajectory Transformer")
    assert not at.get("plotly_chart")


def test_mismatched_dataset_is_one_error_sentence():
    at = page("2_Attention.py", "cartpole-dt", "pendulum")
    assert len(at.error) == 1 and "observation features but the dt agent expects 4" in at.error[0].value


def test_return_conditioning_page_sweep_and_offline_replay():
    at = page("3_Return_conditioning.py", "cartpole-dt", "cartpole", sweep_episodes=1, sweep_targets="25, 500")
    t = titles(at)
    assert t[0].startswith("Return conditioning: achieved vs target return (CartPole-v1, 1 episodes")
    sweep = charts(at)[0]
    means = next(d for d in sweep["data"] if d.get("name") == "mean")
    assert arr(means["x"]).tolist() == [25.0, 500.0]
    assert any(x.startswith("Episode 0 replayed with its return-to-go shifted") for x in t)
    at.number_input(key="shift_episode").set_value(5).run()
    assert not at.exception
    assert any(x.startswith("Episode 5 replayed") for x in titles(at))


def test_return_conditioning_bad_targets_and_bounds():
    at = page("3_Return_conditioning.py", "cartpole-dt", "cartpole", sweep_episodes=1, sweep_targets="lots")
    assert [e.value for e in at.error] == ["Targets must be finite numbers separated by commas, e.g. 100, 300, 500."]
    at = page("3_Return_conditioning.py", "cartpole-dt", "cartpole", sweep_episodes=64, sweep_targets="1,2,3,4,5")
    assert "runs at most 256 at once" in at.error[0].value
    at = page("3_Return_conditioning.py", "pendulum-tt", "pendulum")
    assert "needs a Decision Transformer" in at.info[0].value


def test_return_conditioning_what_if_opens_on_the_shifts_the_data_hold():
    """Issue 27: five shifts over a 500-step CartPole episode were five tangled lines. The page opens on no shift and
    the largest shift each way that keeps the episode's first return-to-go inside the training returns: episode 0
    earned 500, the best, so only the shift down (the others one click away)."""
    from analysis.behaviour.sweeps import default_shifts, return_range
    from models import load_agent
    from trajectories import load_dataset
    from trajectories.samples import sample_datasets

    at = page("3_Return_conditioning.py", "cartpole-dt", "cartpole", sweep_episodes=1, sweep_targets="500")
    root = Path(__file__).resolve().parent.parent
    agent, ds = load_agent(root / "sample_data/agents/cartpole-dt"), load_dataset(sample_datasets()["cartpole"])
    five, (lo, hi) = default_shifts(agent, ds), return_range(agent, ds)
    first = float(ds.episode(0).returns_to_go[0])
    assert first == hi == 500 and min(five) < 0 < max(five)
    box = at.multiselect(key="shift_values")
    assert len(five) == 5 and box.value == [min(five), 0.0] and len(box.options) == 5
    replay = next(c for c in charts(at) if c["layout"]["title"]["text"].startswith("Episode 0 replayed"))
    shifted = [d["name"] for d in replay["data"] if d["name"].startswith("R shifted")]
    assert shifted == [f"R shifted {s:+g}" for s in (min(five), 0.0)]
