"""Catalog entries for value functions over a logged episode (issue 24): Q(s, ·) with the logged and greedy actions,
V(s) and Q(s, a_logged) beside the return-to-go (a Decision Transformer's value head and return prediction in their
place, so compare mode puts the two families side by side on one axis), the advantage of the logged action, and
patching on Q (hidden units of a Markov agent; a recurrent agent's state carried into another episode)."""
from __future__ import annotations

from models.errors import AgentError

from analysis.interp.value_patching import patch_memory, patch_units
from analysis.interp.values import any_value_trace, value_trace
from analysis.publish.catalog import Figured, register
from analysis.publish.figures.labels import data_name
from analysis.publish.figures.value_patching import memory_patching_lines, unit_patching_bars
from analysis.publish.figures.values import advantage_bars, q_heatmap, value_lines
from analysis.publish.figures.text import plain


def _who(agent) -> str:
    return plain(getattr(agent, "family", None) or agent.kind)


def _params(episode) -> dict:
    return {"episode": int(episode)}


@register("q_values", "a value-based agent's Q(s, a) over a logged episode, the logged and greedy actions marked",
          compare="difference")
def make_q_values(agent, dataset, episode: int = 0) -> Figured:
    trace = value_trace(agent, dataset, int(episode))
    if trace.q is None:
        raise AgentError(f"Q(s, ·) over discrete actions needs a discrete-action value agent; {_who(agent)} acts in "
                         f"{agent.act_dim} continuous dimensions (value_trace and advantage draw it).")
    fig = q_heatmap(trace, f"Q(s, a) over episode {trace.episode} of {data_name(dataset)}")
    # the logged action and Q per action only: rows two agents share (compare mode's B − A), greedy = argmax of the row
    frame = trace.to_frame()
    frame = frame[["episode", "step", "logged_action"] + [c for c in frame.columns if c.startswith("q[")]]
    return Figured("q_values", fig, frame, _params(episode))


@register("value_trace", "V(s) and Q(s, a_logged) (a DT: its value head and return prediction) beside the logged "
          "return-to-go", compare="side")   # B's lines are other quantities: beside A's, one value axis
def make_value_trace(agent, dataset, episode: int = 0) -> Figured:
    trace = any_value_trace(agent, dataset, int(episode))
    # one title for every agent (what each draws is its subtitle), so compare mode's panels share it
    fig = value_lines(trace, f"Values over episode {trace.episode} of {data_name(dataset)}")
    return Figured("value_trace", fig, trace.to_frame(), _params(episode))


@register("advantage", "the advantage Q(s, a_logged) − V(s) per step, greedy and non-greedy logged actions apart",
          compare="side")   # the bars split by each agent's own greedy action: no pair to subtract
def make_advantage(agent, dataset, episode: int = 0) -> Figured:
    trace = value_trace(agent, dataset, int(episode))
    fig = advantage_bars(trace, f"Advantage of the logged action over episode {trace.episode} of {data_name(dataset)}")
    return Figured("advantage", fig, trace.to_frame(), _params(episode))


# ---- patching on Q (the Circuits page) -------------------------------------------------------------------------------
@register("q_patching_units", "a Markov value agent: each hidden unit patched from a clean observation into a "
          "corrupted one, the share of Q (or V) it restores")
def make_q_patching_units(agent, dataset, episode: int = 0, step: int = 0, corrupt_episode: int = 1,
                          output: str = "q") -> Figured:
    res = patch_units(agent, dataset, int(episode), int(step), int(corrupt_episode), None, output)
    fig = unit_patching_bars(res, f"Patching hidden units of Q — {data_name(dataset)}")
    return Figured("q_patching_units", fig, res.to_frame(), {"episode": int(episode), "step": int(step),
                                                             "corrupt_episode": int(corrupt_episode), "output": output})


@register("q_patching_memory", "a recurrent value agent: its state after one step replaced by another episode's, "
          "the change in Q (or V) at every later step")
def make_q_patching_memory(agent, dataset, episode: int = 0, step: int = 0, corrupt_episode: int = 1,
                           output: str = "q") -> Figured:
    res = patch_memory(agent, dataset, int(episode), int(step), int(corrupt_episode), output)
    fig = memory_patching_lines(res, f"What the recurrent state carries — {data_name(dataset)}")
    return Figured("q_patching_memory", fig, res.to_frame(), {"episode": int(episode), "step": int(step),
                                                              "corrupt_episode": int(corrupt_episode), "output": output})
