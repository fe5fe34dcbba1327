"""Episode player: the rendered episode, step by step, beside where the action token looks, the credit over its
context and what the model predicts next; played in the browser (analysis/media/player.py, ui/player.py)."""
from dataclasses import replace

import streamlit as st

from analysis.core.identity import dataset_key, stamp_dataset
from analysis.media.player import CREDIT_TARGETS, MAX_IMAGINED_STEPS, PlayerError, player_data
from analysis.media.video import PAGE_WIDTH
from analysis.behaviour.predictions import default_context
from models.env_choice import can_act
from ui import exports, player
from ui.nav import page_param, set_page_param
from ui.page import computed, figure, start
from ui.text import md_escape

sel = start("Episode player", "Watch an episode of the dataset as the environment draws it, and beside each frame what "
            "the agent computes at that step: where its action token looks over its context (a Decision Transformer's "
            "attention), which context tokens get the credit for its action (saliency), and what it predicts next beside "
            "what really followed. Play, pause, step (← →) and scrub run in your browser on precomputed steps, so "
            "playing never reruns the page.")
agent, ds = sel.agent, sel.dataset


def _drawn_in(ds, env_id):
    """The dataset with the environment its frames are drawn in: a file that names none (a CSV upload) is drawn in the
    agent's (its spaces fit the agent, and check_dataset has fitted the data to the agent). Kept per session: the copy
    shares the arrays and is stamped with its content key once."""
    key = (dataset_key(ds), env_id)
    kept = st.session_state.get("player_drawn_in")
    if kept is None or kept[0] != key:
        kept = (key, stamp_dataset(replace(ds, env_id=env_id)))
        st.session_state["player_drawn_in"] = kept
    return kept[1]


borrowed_env = None
if not ds.env_id and agent.config.env_id:   # frames whenever the environment is known
    borrowed_env = agent.config.env_id
    ds = _drawn_in(ds, borrowed_env)
    sel = replace(sel, dataset=ds, key="")
acts = can_act(agent) and agent.has("acts") and not agent.has("planning")   # a TT's beam search: seconds a step

lengths = ds.episode_lengths
longest = int(lengths.argmax()) if lengths.max() < 600 else 0
try:   # a link, a reload or back / forward may name the episode (?episode=3); else the widget's, else the last one
    wanted = int(page_param("episode", st.session_state.get("player_episode")))   # chosen here (ui/nav.py)
except (TypeError, ValueError):
    wanted = longest
st.session_state["player_episode"] = min(max(int(wanted), 0), ds.n_episodes - 1)   # another dataset may be shorter
c0, c1 = st.columns(2)      # two to a row: at a 1000 px viewport five columns cut their labels
c2, c3 = st.columns(2)
source = c0.selectbox("Source", ["data", "rollout"] if acts else ["data"], key="player_source",
                      format_func={"data": "a dataset episode", "rollout": "the agent acting"}.get,
                      help="A logged episode of the dataset, or one episode of the agent acting in its environment "
                           "(its attention as it acted).")
rollout, target = None, None
if source == "rollout":
    seed = int(c1.number_input("Reset seed", 0, 2**31 - 1, 0, key="player_seed"))
    if agent.has("return_conditioned"):
        from analysis.behaviour.sweeps import return_range

        target = float(c3.number_input("Target return", value=float(round(return_range(agent, ds)[1], 1)),
                                       key="player_target", help="What the DT is asked for at the first step "
                                                                 "(default: the best return of its training data)."))
    rollout = (seed, target)
    episode, length = 0, None
else:
    episode = int(c1.number_input("Episode", 0, ds.n_episodes - 1, key="player_episode",
                                  help="Default: the longest episode (under 600 steps)."))
    set_page_param("episode", episode, default=longest)
    length = int(lengths[episode])
targets = [t for t in CREDIT_TARGETS if agent.has("action") and (t == "action" or agent.has(t))]
credit = c2.selectbox("Credit for", targets, format_func=CREDIT_TARGETS.get, key="player_credit",
                      help="The output whose credit is split over the context. On Key-to-Door the action needs no "
                           "memory (the return-to-go says whether the key was taken); the value must remember.") \
    if len(targets) > 1 else "action"
imagine = None
if agent.has("dynamics") and length is not None:   # predicts states open loop: one step ahead, or imagined
    mode = c2.selectbox("Prediction", ["step", "imagine"], key="player_predict",
                        format_func={"step": "one step ahead, at every step",
                                     "imagine": "imagined from a step (open loop)"}.get,
                        help="Imagined: from the chosen step the model is fed the logged actions and its own "
                             "predicted states; its imagined states are drawn beside the logged frames.")
    if mode == "imagine" and length > 1:
        if st.session_state.get("player_from", 0) > length - 2:   # chosen on a longer episode
            st.session_state["player_from"] = length - 2
        horizon = int(c2.number_input("Horizon (steps)", 1, MAX_IMAGINED_STEPS, min(20, length - 1), key="player_horizon"))
        first = int(c3.number_input("From step", 0, length - 2, min(default_context(agent, horizon), length - 2),
                                    key="player_from"))
        imagine = (first, horizon)



def _downloads() -> None:
    """The episode as GIF / MP4 (the catalog's episode_video: the same file `cli.py export` writes), and the page's
    bundle; encoded only when a button is pressed."""
    params = {"imagine_start": imagine[0], "imagine_horizon": imagine[1]} if imagine else {}
    try:
        if rollout is None:
            f = figure(sel, "episode_video", episode=episode, width=PAGE_WIDTH, **params)
            paths = sel.paths
        else:   # no dataset: the entry rolls the agent out with the same seeds (models.rollout.episode_dataset)
            from analysis.publish import catalog
            from analysis.core.cache import cached

            f = computed(sel, lambda: cached("figure:episode_video", lambda: catalog.make(
                "episode_video", agent, None, episode=0, seed=rollout[0], target_return=rollout[1], width=PAGE_WIDTH),
                agent, None, names=[sel.agent_name], episode=0, seed=rollout[0], target_return=rollout[1],
                width=PAGE_WIDTH))
            paths = {**sel.paths, "data_path": None}
    except ValueError as e:   # VideoError: one sentence (the player above still plays)
        st.caption(f"No video download: {md_escape(e)}")
        return
    collected = []
    exports.video_buttons(f, "player_video", collected)
    exports.bundle_button(collected, "Episode player", agent, ds if rollout is None else None, **paths)


bar = st.progress(0.0, text="Frames, attention, credit and predictions of every step…")
try:   # computed once per (agent, dataset, episode, credit target), then served from the cache
    data = computed(sel, lambda: player_data(agent, ds, episode, credit=credit, imagine=imagine, rollout=rollout),
                    progress=lambda f, m: bar.progress(min(max(f, 0.0), 1.0), text=md_escape(m)))
except PlayerError as e:
    bar.empty()
    st.error(md_escape(e))
    st.stop()
bar.empty()

player.show(data)   # says itself, once, above the state lines, why there are no frames

what = [data.why if data.frames is not None else "A state-line plot stands in for the frames."]
if borrowed_env and rollout is None:
    what.insert(0, f"{sel.dataset_name} names no environment; its frames are drawn in {borrowed_env}, the agent's.")
if data.attention is not None:
    what.append(f"Attention: the action token's (s_t) weights over its {agent.context_length} context steps as the "
                "agent acts, layers and heads averaged, stacked by token type; attention is where information can "
                "flow, not proof that it is used.")
if data.credit is not None:
    what.append("Credit: saliency |∂f/∂x| of each context token as a share of the window's total (the Credit "
                "assignment page has integrated gradients, ablation and the randomized-model check).")
if data.prediction is not None:
    what.append(data.prediction["note"])
if data.imagined is not None and not data.imagined["why"]:
    what.append("The imagined frame draws the model's predicted state at each step of its horizon; outside it, the "
                "frame is grey.")
st.caption(" ".join(md_escape(w) for w in what))   # data.why and the notes quote the dataset's environment and names
for note in data.notes:
    st.caption(md_escape(note))
_downloads()
