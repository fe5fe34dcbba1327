"""The server `make app` starts: `python -m ui.serve app.py [streamlit options] [-- app args]`.

Streamlit runs app.py only when a browser connects, so on a fresh server the first visitor waited for every
import the pages need (torch alone ~1 s, with torch._dynamo; the analyses, captum, gymnasium, MuJoCo, plotly)
and for torch's first meta-device build (sympy, ~1.5 s, when an agent is checked before it is built): ~4-5 s
before any analysis ran. `warm()` does that once, before the server listens; then this is `streamlit run`.

Arguments after `--` go to app.py unchanged (ui/local.py reads them): `--data`, `--agent` and `--local`, which
`make app LOCAL=1` passes and which alone turns on Home's path box; `path_box_note` says so on stderr at start.
"""
from __future__ import annotations

import ipaddress
import sys
import time


def warm() -> float:
    """Import what every page imports and run the one-time torch paths; returns the seconds it took."""
    t = time.perf_counter()
    import pandas  # noqa: F401
    import plotly.graph_objects  # noqa: F401

    from analysis.publish import catalog
    catalog.figures()   # imports every entry module, and through them every analysis (captum among them)
    import envs  # noqa: F401  (gymnasium, and MuJoCo's registrations)
    import models
    from models.base import AgentConfig
    from models.loading import build_meta

    import ui.agents  # noqa: F401
    import ui.data  # noqa: F401

    build_meta(AgentConfig(kind="dt", obs_dim=1, act_dim=1, discrete=False, hparams={"hidden": 8, "n_layer": 1}), "warm-up")
    models.build_agent(AgentConfig(kind="dt", obs_dim=1, act_dim=1, discrete=False, hparams={"hidden": 8, "n_layer": 1}))
    return time.perf_counter() - t


def path_box_note(argv: list[str]) -> str | None:
    """One line for the operator when app.py gets --local: what the box opens, louder when the server is not bound
    to loopback only (Streamlit binds every interface when --server.address is not given)."""
    if "--" not in argv or "--local" not in argv[argv.index("--") + 1:]:
        return None
    address = ""
    for i, arg in enumerate(argv[:argv.index("--")]):
        if arg == "--server.address" and i + 1 < len(argv):
            address = argv[i + 1]
        elif arg.startswith("--server.address="):
            address = arg.split("=", 1)[1]
    address = address.strip().strip("[]")
    try:
        loopback = address.lower() == "localhost" or ipaddress.ip_address(address).is_loopback
    except ValueError:
        loopback = False
    line = "seqlens: --local: Home shows a box that opens any file this server's user can read"
    if loopback:
        return line + "; keep this server on this machine (no reverse proxy in front of it)."
    return line + f", and the server listens on {address or 'every interface'}: anyone who reaches it can read them."


def main() -> None:
    if (note := path_box_note(sys.argv[1:])) is not None:
        print(note, file=sys.stderr)
    seconds = warm()
    print(f"seqlens: imports and torch warm-up done in {seconds:.1f} s; starting Streamlit", file=sys.stderr)
    from streamlit.web import cli as stcli

    sys.argv = ["streamlit", "run", *sys.argv[1:]]
    sys.exit(stcli.main())


if __name__ == "__main__":
    main()
