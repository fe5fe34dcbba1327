"""Capabilities, not kinds (docs/ARCHITECTURE.md, "Named activations": `agent.has(...)`).

Pages and analyses ask an agent what it can do (`agent.has("return_conditioned")`, `needs=("attention",)`), never
which model family it is. Every .py file of analysis/, ui/, views/, cli/, bench/, cli.py and home.py is parsed (ast,
never imported) and any comparison of a kind with a model family's name (`agent.kind == "dt"`, `kind in ("tt",
"dynamics")`, `c.get("kind") not in (...)`, `r["kind"] != "dynamics"`), any membership of a kind in a collection
(`facts.kind not in sel.kinds`), any dict keyed by a kind (`WRAP[agent.kind]`) and any `kinds=` argument fails,
except at the sites ALLOWED lists: each one selects a model family's own definition, with the reason.

The Rollout protocol (models.base.Rollout) names every method callers use on a rollout; each shipped family's
rollout has all of them.
"""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ["analysis", "ui", "views", "cli", "bench", "cli.py", "home.py", "app.py"]
FAMILIES = {"dt", "tt", "mlp", "gru", "dynamics", "q", "drqn", "cq"}

# (file, enclosing function) -> why a kind selects a model family's own definition there
ALLOWED: dict = {}   # none left: the last three (a hostile checkpoint's hparams, two prediction captions) now ask
#                      the hparams registry and the analysis result; a new site needs a reason here


def _files() -> list[Path]:
    out = []
    for name in SCANNED:
        p = ROOT / name
        out += sorted(p.rglob("*.py")) if p.is_dir() else [p] if p.is_file() else []
    return out


def _is_kind(node: ast.AST) -> bool:
    """x.kind, kind, d["kind"], d.get("kind"), getattr(x, "kind", ...)."""
    if isinstance(node, ast.Attribute):
        return node.attr in ("kind", "agent_kind")
    if isinstance(node, ast.Name):
        return node.id == "kind"
    if isinstance(node, ast.Subscript):
        return isinstance(node.slice, ast.Constant) and node.slice.value == "kind"
    if isinstance(node, ast.Call):
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr == "get" and node.args:
            return isinstance(node.args[0], ast.Constant) and node.args[0].value == "kind"
        if isinstance(f, ast.Name) and f.id == "getattr" and len(node.args) >= 2:
            return isinstance(node.args[1], ast.Constant) and node.args[1].value == "kind"
    return False


def _names_family(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return node.value in FAMILIES
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(_names_family(e) for e in node.elts)
    return False


def _kind_branches(tree: ast.AST) -> list[tuple[int, str, str]]:
    """(line, enclosing function, what) of every kind comparison, kind-keyed lookup and kinds= argument."""
    out = []

    def visit(node, func):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            func = node.name
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_is_kind(s) for s in sides):
                other = [s for s in sides if not _is_kind(s)]
                member = any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops)
                if any(_names_family(s) for s in other) or (
                        member and not any(isinstance(s, ast.Constant) for s in other)):
                    out.append((node.lineno, func, ast.unparse(node)))
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Attribute) and node.slice.attr == "kind":
            out.append((node.lineno, func, ast.unparse(node)))
        if isinstance(node, ast.keyword) and node.arg == "kinds":
            out.append((getattr(node.value, "lineno", 0), func, "kinds=" + ast.unparse(node.value)))
        for child in ast.iter_child_nodes(node):
            visit(child, func)

    visit(tree, "<module>")
    return out


def test_the_scan_finds_kind_branches():
    """The scan itself: each form it must catch, and forms it must leave alone (other meanings of "kind")."""
    caught = ['agent.kind == "dt"', 'kind in ("tt", "dynamics")', 'c.get("kind") not in ("dynamics", "tt")',
              'r["kind"] != "dynamics"', 'facts.kind not in sel.kinds', 'WRAP[agent.kind](m)',
              'getattr(agent, "kind", None) != "dt"', 'page_setup("x", kinds=("dt",))']
    left = ['grid.kind == "positions"', 'np.asarray(v).dtype.kind in "biuf"', 'e.kind == "file"',
            'f"a {agent.kind} agent"', 'agent.has("attention")']
    for src in caught:
        assert _kind_branches(ast.parse(src)), src
    for src in left:
        assert not _kind_branches(ast.parse(src)), src


def test_no_kind_branches_outside_family_definitions():
    found, used = [], set()
    for path in _files():
        rel = path.relative_to(ROOT).as_posix()
        for line, func, what in _kind_branches(ast.parse(path.read_text(), filename=rel)):
            if (rel, func) in ALLOWED:
                used.add((rel, func))
                continue
            found.append(f"{rel}:{line} in {func}(): {what}")
    assert not found, ("branch on capabilities (agent.has(...), models.base.CAPABILITIES), not kinds; or, where a "
                       "kind selects a model family's own definition, list the site in ALLOWED with the reason:\n"
                       + "\n".join(found))
    assert used == set(ALLOWED), f"ALLOWED lists sites with no kind branch left: {sorted(set(ALLOWED) - used)}"


# capabilities that describe an agent and that nothing branches on yet, with the reason
DESCRIPTIVE = {"kv_cache": "how the DT and TT act and decode (a fact of the agent); every path is exact with or without "
                           "it, so no page or analysis needs to ask",
               "q_values": "issue 24: the value agents' views (built beside them, in another part) ask for it; until "
                           "they are merged no page does"}


def test_every_capability_is_declared_and_asked():
    """Each capability belongs to some agent class and is asked somewhere outside models/ (return_conditioned
    was declared and never asked), but the DESCRIPTIVE ones."""
    from models.base import CAPABILITIES
    from models.baselines import MLPPolicy, GRUPolicy, DynamicsModel
    from models.decision_transformer import DecisionTransformer
    from models.drqn import DRQN
    from models.q_network import QNetwork
    from models.trajectory_transformer import TrajectoryTransformer

    from models.continuous_q import ContinuousQ

    classes = [DecisionTransformer, TrajectoryTransformer, MLPPolicy, GRUPolicy, DynamicsModel, QNetwork, DRQN, ContinuousQ]
    for c in classes:
        assert c.capabilities <= set(CAPABILITIES), (c.__name__, c.capabilities - set(CAPABILITIES))
    declared = set().union(*(c.capabilities for c in classes))
    assert declared == set(CAPABILITIES), set(CAPABILITIES) - declared
    text = "\n".join(p.read_text() for p in _files() if not p.relative_to(ROOT).as_posix().startswith("bench/"))
    text += "\n".join(p.read_text() for p in (ROOT / "views").glob("*.py"))
    never = [c for c in CAPABILITIES if f'"{c}"' not in text and c not in DESCRIPTIVE]
    assert not never, f"capabilities no page or analysis asks for: {never}"


@pytest.mark.parametrize("name", ["cartpole-dt", "cartpole-mlp", "masked-cartpole-gru", "pendulum-tt"])
def test_shipped_rollouts_follow_the_protocol(name):
    from models import load_agent
    from models.base import Rollout, ROLLOUT_METHODS
    agent = load_agent(ROOT / "sample_data" / "agents" / name)
    ro = agent.start_rollout(2, target_returns=np.array([100.0, 200.0]) if agent.has("return_conditioned") else None)
    assert isinstance(ro, Rollout)
    for m in ROLLOUT_METHODS:
        assert callable(getattr(ro, m)), (name, m)
    # each method works as the protocol says, on the agent's own environment's first observations
    import envs

    vec = envs.make_vec(agent.config.env_id, num_envs=2, vectorization_mode="sync")
    try:
        obs, _ = vec.reset(seed=0)
    finally:
        vec.close()
    actions = ro.act(obs.astype(np.float32))
    assert ro.attention is None                       # recorded only when asked (record_attention)
    p = ro.policy()
    assert p.shape == ((2, agent.config.n_actions) if agent.discrete else (2, agent.act_dim))
    if agent.discrete:
        np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-5)
    v = ro.value()
    assert (v is None) == (not agent.has("value")) and (v is None or (v.shape == (2,) and np.isfinite(v).all()))
    ro.take(actions)
    ro.observe(np.ones(2))
    ro.skip_done(np.array([False, True]))
