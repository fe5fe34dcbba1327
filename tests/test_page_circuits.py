"""AppTest: the Circuits page (issue 14) runs patching, DLA, the logit lens and ablation on shipped agents; its
charts are the catalog's figures; choices that cannot work are not offered or get one sentence."""
from test_page_attention import charts, downloads, page, same_as_catalog, titles


def test_keydoor_patching_defaults_to_key_taken_vs_not_on_the_value():
    at = page("8_Circuits.py", "keydoor-dt", "keydoor")
    assert not at.error, [e.value for e in at.error]
    assert at.selectbox(key="circ_corrupt").value == "key" and at.selectbox(key="circ_output_key").value == "value"
    assert same_as_catalog(charts(at)[0], "patching_positions", "keydoor-dt", "keydoor", corrupt="key", output="value")
    assert same_as_catalog(charts(at)[1], "patching_heads", "keydoor-dt", "keydoor", corrupt="key", output="value")
    assert any("logit lens" in t.lower() or "layer" in t.lower() for t in titles(at))
    # shifting the return-to-go cannot change the value (the value head hides it): not offered
    at.selectbox(key="circ_corrupt").set_value("rtg").run()
    assert not at.exception and not at.error
    assert "value" not in at.selectbox(key="circ_output_rtg").options
    # ablation runs on a click; an empty set is a sentence
    at.button(key="abl_run").click().run()
    assert not at.exception and any(t.startswith("Ablation") or "ablat" in t.lower() for t in titles(at))
    at.multiselect(key="abl_choice").set_value([]).run()
    assert any("at least one head or MLP" in i.value for i in at.info)
    assert any(label.startswith("Download all") for label in downloads(at))


def test_cartpole_episode_corruption_picks_an_episode_long_enough():
    at = page("8_Circuits.py", "cartpole-dt", "cartpole")
    assert not at.error, [e.value for e in at.error]
    step = at.number_input(key="circ_step").value
    corrupted = at.number_input(key="circ_corrupt_episode").value
    from trajectories import load_dataset
    from trajectories.samples import sample_datasets

    assert load_dataset(sample_datasets()["cartpole"]).episode_lengths[corrupted] > step
    at.number_input(key="circ_corrupt_episode").set_value(1).run()   # 159 steps: the step is past its end
    assert not at.exception and any("out of range" in e.value for e in at.error)


def test_trajectory_transformer_gets_its_token_stream_views():
    at = page("8_Circuits.py", "pendulum-tt", "pendulum")
    assert not at.error and [h.value for h in at.subheader] == ["Head and MLP patching on the token stream", "Ablation"]
    assert len(charts(at)) == 2


def test_agents_without_a_transformer_are_refused_with_a_sentence():
    at = page("8_Circuits.py", "cartpole-mlp", "cartpole")
    assert any("needs a Decision Transformer or a Trajectory Transformer" in i.value for i in at.info)


def test_compare_mode_with_the_same_kind_of_agent_on_circuits():
    """?compare=randomized: the patching maps get the randomized copy's panel and a B - A panel; the bundle names both."""
    at = page("8_Circuits.py", "keydoor-dt", "keydoor", compare="randomized")
    assert not at.exception
    fig = charts(at)[0]
    xaxes = [k for k in fig["layout"] if k.startswith("xaxis")]
    assert len(xaxes) >= 3                                   # A | B | B - A
    assert any(label.startswith("Download all") for label in downloads(at))
