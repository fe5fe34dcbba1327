"""A link's ?env= that cannot be used (ui/nav.py): an id seqlens cannot make, or one whose spaces do not fit the
agent, is one warning sentence naming the id and what was expected; the agent, the dataset and the rest of the link
are kept, and the URL drops the environment."""
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent


def _open(**params) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.query_params.update(params)
    at.switch_page("views/1_Dataset.py").run()
    assert not at.exception, at.exception
    return at


def _param(at: AppTest, key: str):
    v = at.query_params.get(key)
    return v[-1] if isinstance(v, list) else v


@pytest.mark.parametrize("env, expected", [
    ("NoSuchEnv-v9", "make here (expected one of CartPole-v1 for cartpole-dt)"),   # unknown here
    ("Pendulum-v1", "cartpole-dt (expected one of CartPole-v1)"),              # spaces that do not fit the agent
])
def test_a_link_naming_an_environment_that_cannot_be_used_is_one_warning(env, expected):
    at = _open(agent="cartpole-dt", dataset="keydoor", env=env, compare="randomized")
    warnings = [w.value for w in at.warning if env in w.value]
    assert len(warnings) == 1 and expected in warnings[0], [w.value for w in at.warning]
    assert warnings[0].count(". ") == 0   # one sentence
    assert (_param(at, "agent"), _param(at, "dataset"), _param(at, "compare")) == ("cartpole-dt", "keydoor", "randomized")
    assert _param(at, "env") is None and at.session_state["env"] is None
    assert any(c.value.startswith("**keydoor**") for c in at.caption), [c.value for c in at.caption]


def test_a_link_naming_an_environment_that_fits_is_kept_without_a_warning():
    at = _open(agent="cartpole-dt", dataset="cartpole", env="CartPole-v1")
    assert not [w.value for w in at.warning if "CartPole-v1" in w.value]
    assert _param(at, "env") == "CartPole-v1"
