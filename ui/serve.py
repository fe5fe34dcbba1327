"""The server `make app` starts: `python -m ui.serve app.py [streamlit options] [-- app args]`.

Streamlit runs app.py only when a browser connects, so on a fresh server the first visitor waited for every
import the pages need (torch alone ~1 s, with torch._dynamo; the analyses, captum, gymnasium, MuJoCo, plotly)
and for torch's first meta-device build (sympy, ~1.5 s, when an agent is checked before it is built): ~4-5 s
before any analysis ran. `warm()` does that once, before the server listens; then this is `streamlit run`.
"""
from __future__ import annotations

import sys
import time


def warm() -> float:
    """Import what every page imports and run the one-time torch paths; returns the seconds it took."""
    t = time.perf_counter()
    import pandas  # noqa: F401
    import plotly.graph_objects  # noqa: F401

    from analysis import catalog

    catalog.figures()   # imports every entry module, and through them every analysis (captum among them)
    import envs  # noqa: F401  (gymnasium, and MuJoCo's registrations)
    import models
    from models.base import AgentConfig
    from models.checkpoint import build_meta

    import ui.agents  # noqa: F401
    import ui.data  # noqa: F401

    build_meta(AgentConfig(kind="dt", obs_dim=1, act_dim=1, discrete=False, hparams={"hidden": 8, "n_layer": 1}), "warm-up")
    models.build_agent(AgentConfig(kind="dt", obs_dim=1, act_dim=1, discrete=False, hparams={"hidden": 8, "n_layer": 1}))
    return time.perf_counter() - t


def main() -> None:
    seconds = warm()
    print(f"seqlens: imports and torch warm-up done in {seconds:.1f} s; starting Streamlit", file=sys.stderr)
    from streamlit.web import cli as stcli

    sys.argv = ["streamlit", "run", *sys.argv[1:]]
    sys.exit(stcli.main())


if __name__ == "__main__":
    main()
