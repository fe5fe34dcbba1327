"""Attention: where the agent's action token looks over its history (DT), or attention by dimension (TT)."""
import streamlit as st

from ui import compare, exports
from ui.page import figure, start

sel = start("Attention", "A Decision Transformer predicts each action from the hidden state of the current state "
            "token. These views show where that token's attention goes — to past returns-to-go, states or actions, "
            "and how many steps back — as the agent computes it while acting. Attention is where information *can* "
            "flow, not proof that it matters: the Credit assignment page tests that.", needs=("attention",))
sel = compare.select(sel)   # compare mode: a second agent beside every figure (?compare=)
agent, ds = sel.agent, sel.dataset
collected = []

if agent.has("tokens"):
    st.markdown("A Trajectory Transformer reads one token per dimension. The paper found some heads *Markovian* "
                "(weight on the latest transition) and others *striated* (each dimension reading its own past).")
    n_layer, n_head = agent.n_layer, agent.n_head

    @st.fragment
    def tt_views():
        collected = []
        c1, c2 = st.columns(2)
        layer = c1.selectbox("Layer", range(n_layer), format_func=lambda i: f"layer {i + 1}", key="tt_layer")
        head = c2.selectbox("Head", [None, *range(n_head)], format_func=lambda h: "heads averaged" if h is None else f"head {h}",
                            key="tt_head")
        exports.show(figure(sel, "tt_attention", layer=layer, head=head), "tt_attention", collected)
        exports.show(figure(sel, "tt_attention_dims", layer=layer), "tt_dims", collected)
        exports.bundle_button(collected, "Attention", agent, ds, **sel.paths)
    tt_views()
else:
    lengths = ds.episode_lengths
    episode = st.number_input("Episode", 0, ds.n_episodes - 1, int(lengths.argmax()) if lengths.max() < 600 else 0,
                              key="att_episode", help="Default: the longest episode.")
    scale = st.radio("Colour scale", ["data", "fixed"], horizontal=True, key="att_scale",
                     format_func={"data": "fit the weights shown", "fixed": "fixed 0–1"}.get,
                     help="Attention weights are often all below 0.2: fitting the scale to them shows their pattern; "
                          "the fixed scale compares figures. The colour bar says which.")
    exports.show(figure(sel, "attention_episode", episode=int(episode), scale=scale), "att_episode", collected)
    st.caption("Each column is one step of the episode; each row how many steps back the action token looked "
               "(layers and heads averaged). Rewards below share the x axis.")
    n_layer, n_head = agent.n_layer, agent.n_head
    above = tuple(collected)

    @st.fragment
    def window_views():
        collected = list(above)   # a fragment rerun starts from the figures drawn above it
        length = int(lengths[int(episode)])
        step = st.slider("Step", 0, length - 1, min(length - 1, agent.context_length + 5), key="att_step") \
            if length > 1 else 0
        c2, c3 = st.columns(2)   # a third of a 540 px column cut "heads averaged"
        layer = c2.selectbox("Layer", range(n_layer), index=n_layer - 1, format_func=lambda i: f"layer {i + 1}", key="att_layer")
        head = c3.selectbox("Head", [None, *range(n_head)], format_func=lambda h: "heads averaged" if h is None else f"head {h}",
                            key="att_head")
        left, right = compare.columns(sel)   # full width each when two agents share a figure
        with left:
            exports.show(figure(sel, "attention_token_types", episode=int(episode), step=step), "att_types", collected)
        with right:
            exports.show(figure(sel, "attention_steps_back", episode=int(episode), step=step), "att_back", collected)
        exports.show(figure(sel, "attention_map", episode=int(episode), step=step, layer=layer, head=head,
                                    scale=scale), "att_map", collected)
        exports.show(figure(sel, "attention_rollout", episode=int(episode), step=step), "att_rollout", collected)
        exports.bundle_button(collected, "Attention", agent, ds, **sel.paths)
    window_views()
