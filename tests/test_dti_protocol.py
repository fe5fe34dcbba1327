"""Issue 23 item 3's protocol check: a DTI checkpoint converted with `cli.py convert-agent --from dti` and run by
seqlens' rollout (models/rollout.run_episodes: make_agent_env, DTRollout; the path the Live play and
Return-conditioning pages take) acts as DTI's own evaluation does.

The agents are real DTI-format checkpoints trained on this machine (tests/data/dti_memory.pt: a one-hot Memory agent;
tests/data/dti_dynamic_obstacles.pt: a Dynamic-Obstacles-8x8 agent; rebuilt by `python -m bench.dti_agents build`).
The reference is tests/dti_protocol_reference.py, DTI's evaluate_dt_agent re-written from its source (greedy, windows
left-padded with zero states and pad actions, the return-to-go dropping by each reward, max_steps from the
checkpoint's environment_config) running tests/dti_reference.py's module. Both run the same seeded episodes and must
take the same actions and get the same returns, episode by episode. The test runs 20 seeds per case;
`python -m bench.dti_agents eval` runs all 100 (README, "DTI's evaluation protocol, checked on trained agents").
The last two tests check what the agents were made from: the trainer's windows are the protocol's, and the
Dynamic-Obstacles behaviour policy.
"""
from __future__ import annotations

import numpy as np
import pytest

import cli
import dti_protocol_reference as protocol
from models import load_agent
from models.rollout import run_episodes

from conftest import ROOT

DATA = ROOT / "tests" / "data"
SEEDS = list(range(20))
FILES = {"memory": "dti_memory.pt", "dynamic-obstacles": "dti_dynamic_obstacles.pt"}
# measured on these checkpoints (100 seeds: bench.dti_agents eval; README): thresholds a little under
MEMORY_MATCH_AT_1 = 0.9   # measured 1.00 (20/20 here; 100/100 over 100 seeds)
MEMORY_WRONG_AT_0 = 0.9   # measured 1.00 (20/20; 100/100)
DYNOBS_MEAN_AT_1 = 0.75   # measured 0.828 on these 20 seeds (19 goals, 1 collision); 0.815 over 100


@pytest.fixture(scope="module")
def agents(tmp_path_factory):
    """name -> (reference module, model_config, environment_config, converted seqlens agent)."""
    folder = tmp_path_factory.mktemp("dti-protocol")
    out = {}
    for name, file in FILES.items():
        ref, mc, ec = protocol.load(DATA / file)
        assert cli.main(["convert-agent", "--from", "dti", str(DATA / file), "--out", str(folder / name)]) == 0
        out[name] = (ref, mc, ec, load_agent(folder / name))
    return out


_RUNS: dict = {}


def reference_run(agents, name: str, target: float):
    if (name, target) not in _RUNS:
        ref, mc, ec, _ = agents[name]
        _RUNS[name, target] = protocol.evaluate(ref, mc, ec, SEEDS, target)
    return _RUNS[name, target]


def seqlens_run(agent, target: float):
    return run_episodes(agent, len(SEEDS), [target] * len(SEEDS), env_seeds=SEEDS, sample=False,
                        record=("actions",))


@pytest.mark.parametrize("name,target", [("memory", 1.0), ("memory", 0.0), ("dynamic-obstacles", 1.0)])
def test_same_episodes_as_dti_protocol(agents, name, target):
    ref_eps = reference_run(agents, name, target)
    ours = seqlens_run(agents[name][3], target)
    assert ours.lengths.tolist() == [e.length for e in ref_eps]
    for i, e in enumerate(ref_eps):
        assert ours.actions[i, :e.length].tolist() == e.actions, f"seed {e.seed}"
    assert ours.returns.tolist() == [e.ret for e in ref_eps]   # equal, not close: the same env steps


def test_checkpoint_max_steps_sets_the_episode_limit(agents):
    """The environment's limit is environment_config's max_steps (200 for the Memory agent, not the env's own 245
    or the registry's 1,000): the time-outs both paths see end at the same step."""
    _, _, ec, agent = agents["memory"]
    assert ec["max_steps"] == 200 and agent.config.max_ep_len == 201
    from models.rollout import make_agent_env

    env = make_agent_env(ec["env_id"], agent)
    assert env.unwrapped.max_steps == 200
    env.close()


def test_protocol_details_change_the_episodes(agents):
    """The equality above can fail: acting on the real steps only (no left padding) or padding the return-to-go with
    0 (as DTI's training pads it) instead of the initial one changes the actions on some of these episodes. (The
    return-to-go's decrement cannot: both envs pay only at an episode's last step.)"""
    def actions(name, **variant):
        ref, mc, ec, _ = agents[name]
        return [e.actions for e in protocol.evaluate(ref, mc, ec, SEEDS, 1.0, **variant)]

    def plain(name):
        return [e.actions for e in reference_run(agents, name, 1.0)]

    assert actions("memory", pad=False) != plain("memory")
    assert actions("dynamic-obstacles", pad_rtg=0.0) != plain("dynamic-obstacles")


def test_memory_agent_remembers_the_cue(agents):
    """DTI's MemoryDT claim, on this agent: asked for return 1 it walks to the object matching the cue it saw at
    step 0; asked for 0 it walks to the other one."""
    at_one = [e.end for e in reference_run(agents, "memory", 1.0)]
    at_zero = [e.end for e in reference_run(agents, "memory", 0.0)]
    assert at_one.count("match") >= MEMORY_MATCH_AT_1 * len(SEEDS)
    assert at_zero.count("wrong") >= MEMORY_WRONG_AT_0 * len(SEEDS)


def test_dynamic_obstacles_agent_reaches_the_goal(agents):
    returns = np.array([e.ret for e in reference_run(agents, "dynamic-obstacles", 1.0)])
    assert returns.mean() >= DYNOBS_MEAN_AT_1


def test_training_windows_are_the_protocols_windows():
    """bench/dti_agents.py trains on the windows DTI's evaluation builds: a 3-step episode with K = 3, at step 0 two
    pads (zero observation, pad action, the episode's first return-to-go, timestep 0) before the real step."""
    from bench.dti_agents import Windows

    image = np.arange(1, 6, dtype=np.uint8)[:, None, None, None] * np.ones((1, 7, 7, 3), np.uint8)
    cols = {"image": image, "actions": np.array([0, 1, 2, 1, 0]), "rewards": np.array([0, 0, 0.5, 0, 1], np.float32),
            "episode_starts": np.array([0, 3])}
    w = Windows(cols, K=3, one_hot=False)
    states, actions, rtg, ts = w.batch(np.array([0, 2, 4]), n_actions=3)
    assert states[0, :, 0, 0, 0].tolist() == [0, 0, 1] and states[1, :, 0, 0, 0].tolist() == [1, 2, 3]
    assert states[2, :, 0, 0, 0].tolist() == [0, 4, 5]
    assert actions.tolist() == [[3, 3, 0], [0, 1, 2], [3, 1, 0]]
    assert rtg[..., 0].tolist() == [[0.5, 0.5, 0.5], [0.5, 0.5, 0.5], [1, 1, 1]]
    assert ts[..., 0].tolist() == [[0, 0, 0], [0, 1, 2], [0, 0, 1]]


def test_dynamic_obstacles_expert():
    """The scripted behaviour never walks into a ball or a wall itself (20 of 20 episodes reach the goal); its random
    steps do (some -1 returns), so the data holds both outcomes."""
    from envs.dynamic_obstacles_expert import dynamic_obstacles_episodes

    def returns(cols):
        return np.add.reduceat(cols["rewards"], cols["episode_starts"])

    assert (returns(dynamic_obstacles_episodes(20, seed=3, eps=0.0)) > 0).all()
    noisy = returns(dynamic_obstacles_episodes(40, seed=3, eps=0.3))
    assert (noisy == -1).any() and (noisy > 0).any()
