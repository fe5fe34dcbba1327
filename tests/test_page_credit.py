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
