"""AppTest: the Credit assignment page on shipped agents: both maps with the randomized check, widgets that
change them, the Key-to-Door run, the MLP baseline, and a refusal for agents it cannot attribute."""
from test_page_attention import charts, downloads, page, same_as_catalog, titles


def test_credit_page_dt_on_keydoor():
    at = page("4_Credit_assignment.py", "keydoor-dt", "keydoor", attr_episode=1)
    t = titles(at)
    assert len(t) == 2 and downloads(at).count("SVG") == 2
    assert "randomized" in str(charts(at)[0]).lower()
    step = at.slider(key="attr_step").value
    assert same_as_catalog(charts(at)[0], "attribution_timesteps", "keydoor-dt", "keydoor", episode=1, step=step,
                           target="action", method="ig")
    at.selectbox(key="attr_target").select("value").run()
    assert not at.exception
    assert same_as_catalog(charts(at)[0], "attribution_timesteps", "keydoor-dt", "keydoor", episode=1, step=step,
                           target="value", method="ig")
    at.slider(key="kd_episodes").set_value(4).run()
    at.button(key="kd_run").click().run()
    assert not at.exception
    assert len(charts(at)) == 3 and downloads(at).count("PNG") == 3


def test_credit_page_mlp_only_attributes_its_action():
    at = page("4_Credit_assignment.py", "cartpole-mlp", "cartpole", attr_episode=2)
    assert not at.exception and len(charts(at)) == 2
    assert at.selectbox(key="attr_target").options == ["the action taken"]


def test_credit_page_refuses_tt():
    at = page("4_Credit_assignment.py", "pendulum-tt", "pendulum")
    assert "needs a Decision Transformer or an MLP policy or a GRU policy" in at.info[0].value


# ---- issue 27: defaults that agree with the page's own text ----------------------------------------------------------
def test_credit_opens_on_the_door_on_keydoor_and_mid_episode_elsewhere():
    from analysis.interp.attribution import key_door_steps
    from trajectories import load_dataset
    from trajectories.samples import sample_datasets

    kd_data = load_dataset(sample_datasets()["keydoor"])
    at = page("4_Credit_assignment.py", "keydoor-dt", "keydoor", attr_episode=1)
    ep = kd_data.episode(1)
    door = key_door_steps(ep.observations, ep.actions).phase3_step
    slider = at.slider(key="attr_step")
    assert door is not None and slider.value == door and "first phase-3 step" in slider.help
    cp = load_dataset(sample_datasets()["cartpole"])
    at = page("4_Credit_assignment.py", "cartpole-mlp", "cartpole", attr_episode=2)
    L = int(cp.episode_lengths[2])
    assert at.slider(key="attr_step").value == L // 2 != L - 1 and "middle" in at.slider(key="attr_step").help


def _credit_frame(action, value):
    import pandas as pd

    n = len(action)
    return pd.concat([pd.DataFrame({"episode": range(n), "target": t, "share_over_uniform": v})
                      for t, v in (("action", action), ("value", value))], ignore_index=True)


def _patching(restored_share, n=8, gap=1.0, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    clean, corrupted = np.full(n, gap), np.zeros(n)
    span = gap * (restored_share + rng.normal(0, 0.03, n))
    return np.stack([clean, corrupted, span, np.zeros(n)], 1)


def test_keydoor_verdict_is_chosen_from_the_numbers_and_their_cis():
    """The sentence follows the measurements: attribution crediting the action while patching finds the value
    depends on the key step is said as a disagreement; both on the value as agreement; overlapping CIs as no
    separation. Numbers in the sentences are the measured ones."""
    import numpy as np

    from analysis.interp.keydoor_credit import key_door_verdict, restored

    rng = np.random.default_rng(1)
    action, value = 1.7 + rng.normal(0, 0.1, 8), 1.3 + rng.normal(0, 0.1, 8)
    pv, pa = _patching(0.95), _patching(0.05)
    v = key_door_verdict(_credit_frame(action, value), {"value": pv, "action": pa})
    assert (v.credit_favours, v.patching_favours) == ("action", "value")
    assert f"{action.mean():.2f}× a uniform share on the key step for the action" in v.sentences[0]
    assert f"and {value.mean():.2f}× for the value" in v.sentences[0]
    assert f"restores {restored(pv):.0%} of the value's difference" in v.sentences[1]
    assert f"and {restored(pa):.0%} of the action logit's difference" in v.sentences[1]
    assert v.sentences[-1].startswith("Attribution and patching disagree: attribution credits the action more, "
                                      "patching finds the value depends on the key step more.")
    both = key_door_verdict(_credit_frame(value, action), {"value": _patching(0.95), "action": _patching(0.05)})
    assert (both.credit_favours, both.patching_favours) == ("value", "value")
    assert both.sentences[-1] == "Both say the value carries the memory of the key, as the design expects."
    noisy = rng.normal(1.5, 0.6, 8)
    tie = key_door_verdict(_credit_frame(noisy, noisy + rng.normal(0, 0.6, 8)),
                           {"value": _patching(0.95), "action": _patching(0.05)})
    assert tie.credit_favours == "neither" and "cannot be told apart" in tie.sentences[0] and "spans 0" in tie.sentences[0]
    assert tie.sentences[-1].startswith("Patching, the causal test, finds that the value depends on the key step and "
                                        "the action does not, as the design expects")
    # the 8-episode page default of issue 27: attribution leans to the action without separating the two, patching
    # restores all of the value's difference and an undetermined share of the action's
    lean, wide = np.array([1.2, 2.1, 1.6, 1.9, 1.4, 2.0, 1.5, 1.9]), _patching(0.0)
    behind = np.array([0.2, 2.5, 0.8, 3.0, 0.5, 1.0, 2.4, 0.4])    # paired differences +0.35 on average, spread wide
    wide[:, 2] = [-2.0, 3.0, -1.0, 2.5, 0.0, 1.0, -1.5, 2.0]   # mean 0.5, spread wide: undetermined
    face = key_door_verdict(_credit_frame(lean, behind), {"value": pv, "action": wide})
    assert (face.credit_favours, face.patching_favours) == ("neither", "value")
    assert "the action is not shown to, as the design expects. Attribution's estimates lean the other way (action" \
        in face.sentences[-1] and face.sentences[-1].endswith("the two methods disagree; the patching is the firmer result.")
    none = key_door_verdict(_credit_frame(noisy, noisy), {"value": _patching(0.5), "action": _patching(0.5, seed=1)})
    assert (none.credit_favours, none.patching_favours) == ("neither", "neither")
    assert none.sentences[-1].startswith("Neither attribution nor patching separates")


def test_keydoor_page_says_what_its_own_credit_and_patching_show():
    """The page's sentence is key_door_verdict of the figure it shows and the patching of the same episodes (the
    reproduction's key_door_patching is key_span_patching for the value: one definition of the pairs)."""
    from analysis.interp.keydoor_credit import key_door_verdict, key_span_patching
    from analysis.publish import catalog
    from models import load_agent
    from trajectories import load_dataset
    from trajectories.samples import sample_datasets
    from ui.text import md_escape

    import numpy as np
    from pathlib import Path

    agent = load_agent(Path(__file__).resolve().parent.parent / "sample_data/agents/keydoor-dt")
    ds = load_dataset(sample_datasets()["keydoor"])
    at = page("4_Credit_assignment.py", "keydoor-dt", "keydoor", attr_episode=1, kd_episodes=4)
    at.button(key="kd_run").click().run()
    assert not at.exception
    f = catalog.make("attribution_keydoor", agent, ds, max_episodes=4)
    patching = {o: key_span_patching(agent, ds, o, 4)[0] for o in ("value", "action")}
    want = key_door_verdict(f.data, patching, "integrated gradients")
    assert md_escape(" ".join(want.sentences)) in [m.value for m in at.markdown]
    print(" ".join(want.sentences))


# ---- issue 23: per-token credit on an agent that reads grids -----------------------------------------------------------
def test_credit_page_on_memory_dt_shows_per_token_credit_and_the_spatial_section():
    """memory-dt (7x7x3 MiniGrid grids): the per-token map (R, s, a per step, beside the randomized model) is the
    catalog's, every method and output gives one; no per-feature map (147 values a step: the spatial section draws
    them over the grid), then the spatial strip."""
    import json

    at = page("4_Credit_assignment.py", "memory-dt", "memory", attr_episode=2)
    assert not at.exception, [e.value for e in at.exception]
    heads = [h.value for h in at.subheader]
    assert heads[:2] == ["Which steps and tokens: credit per return, observation and action",
                         "Which cells or pixels: credit on the observations"]
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    kinds = [[t["type"] for t in s["data"]] for s in specs]
    assert sum("heatmap" in k for k in kinds) == 1 and sum(set(k) == {"image"} for k in kinds) == 1
    step = at.slider(key="attr_step").value
    assert same_as_catalog(charts(at)[0], "attribution_timesteps", "memory-dt", "memory", episode=2, step=step,
                           target="action", method="ig")
    assert len(specs) == 2   # no per-feature map
    for key, value in (("attr_method", "ablation"), ("attr_target", "value"), ("attr_method", "saliency")):
        at.selectbox(key=key).select(value).run()
        assert not at.exception, (key, value, [e.value for e in at.exception])
    assert same_as_catalog(charts(at)[0], "attribution_timesteps", "memory-dt", "memory", episode=2, step=step,
                           target="value", method="saliency")
    assert not at.warning and not at.info


def test_credit_page_compares_memory_dt_with_its_randomized_copy():
    """?compare=randomized on memory-dt: the per-token map gets A | B | B − A panels, the spatial section both agents'
    credit on the explained step's observation (one scale) with B − A where it informs, as compare_mode makes it."""
    import json

    import numpy as np

    from analysis.publish.compare_mode import compare, randomized_agent
    from test_page_attention import arr
    from models import load_agent
    from pathlib import Path
    from trajectories import load_dataset
    from trajectories.samples import sample_datasets

    at = page("4_Credit_assignment.py", "memory-dt", "memory", compare="randomized", attr_episode=2, spatial_episode=2)
    assert not at.exception and not at.warning, [w.value for w in at.warning]
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    tokens, spatial = specs
    assert len([k for k in tokens["layout"] if k.startswith("xaxis")]) >= 3   # A | B | B − A
    images = [t for t in spatial["data"] if t["type"] == "image"]
    assert "memory-dt vs randomized copy of memory-dt · episode 2" in spatial["layout"]["title"]["text"]
    agent = load_agent(Path(__file__).resolve().parent.parent / "sample_data/agents/memory-dt")
    ds = load_dataset(sample_datasets()["memory"])
    step = at.slider(key="spatial_step").value
    want = compare("spatial_credit", agent, randomized_agent(agent), ds, "memory-dt", "randomized copy of memory-dt",
                   episode=2, step=step, target="action", method="saliency", scale="window")
    drawn = [t.z for t in want.figure.data if t.type == "image"]
    assert len(images) == len(drawn) in (4, 6)
    for got, z in zip(images, drawn):
        assert np.array_equal(arr(got["z"]).reshape(np.shape(z)), np.asarray(z))


def test_credit_page_on_an_uploaded_atari_conv_dt():
    """A tiny atari_conv DT (4x84x84 frame stacks) on uploaded frames: the per-token map and the spatial strip (one
    picture per real step and the window's sum), no warning."""
    import json

    from test_shaped_views import atari_dataset, atari_dt

    agent, ds = atari_dt(), atari_dataset()
    ds.source = "frames.npz"
    at = page("4_Credit_assignment.py", "upload: atari.zip", "upload: frames.npz", uploads={"frames.npz": ds},
              uploaded_agents={"atari.zip": agent}, attr_episode=1, spatial_episode=1)
    assert not at.warning and not at.info, [w.value for w in (*at.warning, *at.info)]
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert len(specs) == 2 and any(t["type"] == "heatmap" for t in specs[0]["data"])
    step = at.slider(key="spatial_step").value
    assert [t["type"] for t in specs[1]["data"]] == ["image"] * (min(step + 1, agent.context_length) + 1)
    assert "frames.npz" in specs[0]["layout"]["title"]["text"]
