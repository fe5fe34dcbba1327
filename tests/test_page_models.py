"""AppTest: Predicted vs real, Embeddings and Context & memory render with shipped agents, their widgets
change the figures, and agents they cannot analyse get one sentence."""
from test_page_attention import arr, charts, downloads, page, same_as_catalog, titles


def test_predicted_vs_real_tt_against_the_dynamics_model():
    at = page("5_Predicted_vs_real.py", "masked-pendulum-tt", "masked-pendulum", pvr_starts=64)
    t = titles(at)
    assert t[0].startswith("Predicted vs real") and t[1].startswith("Open-loop prediction error vs horizon")
    models = {d.get("name") for d in charts(at)[1]["data"]}
    assert any("masked-pendulum-dynamics" in str(m) for m in models)
    horizon = at.number_input(key="pvr_horizon").value
    at.slider(key="pvr_start").set_value(50).run()
    assert not at.exception
    assert same_as_catalog(charts(at)[0], "predicted_vs_real", "masked-pendulum-tt", "masked-pendulum", episode=0,
                           start=50, horizon=int(horizon))
    assert any(label.startswith("Download all 2 figures") for label in downloads(at))


def test_predicted_vs_real_error_by_horizon_reaches_100_when_asked():
    """The first view stays at 20 horizons (fast); the TT paper's 100 on request, in the figure and the table."""
    at = page("5_Predicted_vs_real.py", "pendulum-dynamics", "pendulum", pvr_starts=64, pvr_others=[])
    assert at.select_slider(key="pvr_horizons").value == 20
    assert max(arr(charts(at)[1]["data"][1]["x"])) == 20
    at.select_slider(key="pvr_horizons").set_value(100).run()
    assert not at.exception
    assert max(arr(charts(at)[1]["data"][1]["x"])) == 100
    assert list(at.dataframe[-1].value.columns) == ["H=1", "H=5", "H=10", "H=20", "H=50", "H=100"]


def test_predicted_vs_real_dt_shows_its_return_head_only():
    at = page("5_Predicted_vs_real.py", "pendulum-dt", "pendulum")
    assert len(charts(at)) == 1 and not at.exception


def test_embeddings_pca_and_colour():
    at = page("6_Embeddings.py", "cartpole-dt", "cartpole", emb_points=2000)
    fig = charts(at)[0]
    assert "PCA" in fig["layout"]["title"]["text"]
    x = arr(fig["data"][0]["x"])
    assert len(x) == 2000
    at.selectbox(key="emb_colour").select("timestep").run()
    assert not at.exception
    assert same_as_catalog(charts(at)[0], "embedding", "cartpole-dt", "cartpole", method="pca", colour_by="timestep",
                           max_points=2000)


def test_context_page_accuracy_and_refusal():
    at = page("7_Context_and_memory.py", "masked-cartpole-dt-k20", "masked-cartpole")
    assert titles(at)[0].startswith("Action prediction vs context")
    at = page("7_Context_and_memory.py", "cartpole-mlp", "cartpole")
    assert "needs a Decision Transformer" in at.info[0].value


def test_predicted_vs_real_dt_hides_the_controls_that_change_nothing_and_says_what_the_reward_row_is():
    """Issue 27: a DT predicts one step ahead everywhere, so start and horizon did nothing; the reward row is the
    return head's error again. The page shows neither control for it and says so with the figure's own numbers;
    a TT keeps both."""
    import numpy as np

    at = page("5_Predicted_vs_real.py", "cartpole-dt", "cartpole")
    keys = [w.key for kind in ("slider", "number_input") for w in at.get(kind)]
    assert "pvr_start" not in keys and "pvr_horizon" not in keys and "pvr_episode" in keys
    from analysis.publish import catalog
    from models import load_agent
    from pathlib import Path
    from trajectories import load_dataset
    from trajectories.samples import sample_datasets

    root = Path(__file__).resolve().parent.parent
    d = catalog.make("predicted_vs_real", load_agent(root / "sample_data/agents/cartpole-dt"),
                     load_dataset(sample_datasets()["cartpole"]), episode=0).data
    ret = d[d["feature"] == d["feature"].iloc[0]]
    err = float(np.nanmean(np.abs(ret["predicted"] - ret["real"])))
    [note] = [c.value.replace("\\", "") for c in at.caption if "not a second prediction" in c.value]   # md_escape's
    assert f"mean |error| {err:.3g} in both" in note and "no start step or horizon" in note
    rew = d[d["feature"] == "reward"]   # the implied reward's error is the return's, mirrored
    assert np.allclose(rew["predicted"] - rew["real"], -(ret["predicted"].to_numpy() - ret["real"].to_numpy()), atol=1e-4)


def test_context_page_intro_reads():
    at = page("7_Context_and_memory.py", "masked-cartpole-dt-k20", "masked-cartpole")
    intro = at.markdown[0].value
    assert intro.startswith("Does a longer history make the agent better, and is the gain memory") and "seeds' question" not in intro
