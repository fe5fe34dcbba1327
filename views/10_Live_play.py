"""Live play: the user acts in the agent's environment while the Decision Transformer shows what it would do, its
value and where it looks; "let the agent act" hands it the controls (analysis/media/live.py)."""
import inspect
import time

import numpy as np
import streamlit as st

import envs
from analysis.publish.figures import live as figs
from analysis.media.live import MAX_AGENT_STEPS, LiveError, LiveGame
from analysis.publish.catalog import Figured
from analysis.core.identity import agent_key
from ui import charts, exports
from ui.page import start
from ui.text import md_escape

sel = start("Live play", "Play the environment yourself, one step at a time, while the Decision Transformer shows "
            "what it would do in your place: its policy, the value it infers from the history (return-to-go hidden), "
            "and where its action token looks. The return-to-go starts at the target you set and drops by every "
            "reward, as when the agent plays. Hand it the controls for some steps, then take them back. An MLP or GRU "
            "policy shows what it would do (a GRU reads your actions as its own).")
agent = sel.agent
SHORTCUTS = {"push_left": "Left", "push_right": "Right", "left": "Left", "right": "Right", "up": "Up", "down": "Down",
             # MiniGrid (turn left / right, forward) and Atari's minimal action sets
             "forward": "Up", "pickup": "p", "drop": "d", "toggle": "t", "done": "Enter",
             "NOOP": "n", "FIRE": "Space", "LEFT": "Left", "RIGHT": "Right", "UP": "Up", "DOWN": "Down"}
KEYS = "shortcut" in inspect.signature(st.button).parameters   # Streamlit >= 1.47
SPEEDS = [1, 2, 5, 10, 20, 50]   # steps per second the agent's turn is played at


def _settings() -> dict:
    c1, c2, c3 = st.columns([2, 1, 1])   # four in a row cut the toggle's label at a 1000 px viewport
    default = agent.config.env_id if agent.config.env_id in envs.registry else None
    if default:
        offered = [default]
    else:   # the tasks that fit the agent's observations (MiniGrid views, Atari stacks), else seqlens' vector ones
        from models.env_choice import candidates

        offered = [e for e in candidates(agent) if e in envs.registry] or list(envs.ENV_ALIASES.values())
    env_id = c1.selectbox("Environment", offered, key="live_env", help="The agent's own environment." if default else
                          "The agent names no environment; play one without its view.")
    seed = int(c2.number_input("Seed", 0, 2**31 - 1, 0, key="live_seed", help="The environment's reset seed."))
    out = {"agent": agent_key(agent), "env": env_id, "seed": seed, "target": None, "sample": False}
    if agent.has("return_conditioned"):
        from analysis.behaviour.sweeps import return_range

        hi = return_range(agent, sel.dataset)[1]
        out["target"] = float(c3.number_input("Target return", value=float(round(hi, 1)), key="live_target",
                                              help="The return-to-go the DT is conditioned on at the first step "
                                                   "(default: the best return of its training data)."))
        out["sample"] = st.toggle("Agent samples", False, key="live_sample",
                                  help="Off: the agent takes its most likely action. On: it samples from its policy, "
                                       "as in evaluation.")
    return out


def _game(settings: dict) -> LiveGame | None:
    """This session's game; a new one when a setting changed or New episode was pressed."""
    game = st.session_state.get("live_game")
    if game is None or st.session_state.get("live_settings") != settings:
        if game is not None:   # closed first: the server's cap on live games (analysis/media/live.py) counts it until then
            st.session_state.pop("live_game", None)
            game.close()
        try:
            game = LiveGame(agent, settings["env"], settings["seed"], settings["target"], settings["sample"])
        except ValueError as e:   # LiveError (a refused environment id, the server's cap on live games)
            st.error(md_escape(e))
            st.session_state.pop("live_settings", None)
            return None
        st.session_state["live_game"], st.session_state["live_settings"] = game, settings
    return game


def _act(game: LiveGame, action=None) -> None:
    """A button's action: one user step. Errors go to the next run (callbacks draw nothing)."""
    try:
        game.step(action)
    except LiveError as e:
        st.session_state["live_error"] = str(e)


def _hand_over() -> None:
    """"Let the agent act": the fragment's next run plays the agent's steps one by one (_animate)."""
    st.session_state["live_pending"] = int(st.session_state["live_n"])


def _controls(game: LiveGame) -> None:
    over = game.done
    if game.discrete:
        # two to a row: the controls share half the page, and four buttons there wrapped their labels letter by letter
        per_row = 2 if len(game.labels) > 2 else len(game.labels)
        cols = [c for start in range(0, len(game.labels), per_row)
                for c in st.columns(per_row)][:len(game.labels)]
        for i, (col, label) in enumerate(zip(cols, game.labels)):
            key = SHORTCUTS.get(label) if KEYS else None
            col.button(label.replace("_", " "), key=f"live_a{i}", on_click=_act, args=(game, i), disabled=over,
                       width="stretch", **({"shortcut": key} if key else {}))   # Streamlit shows the key itself
    else:
        low, high = np.asarray(game.space.low).ravel(), np.asarray(game.space.high).ravel()
        cols = st.columns(len(low) + 1)
        for j in range(len(low)):
            cols[j].slider(game.act_names[j].replace("_", " "), float(low[j]), float(high[j]), 0.0, key=f"live_c{j}")
        # the callback reads the sliders' values as they are when the button is pressed
        cols[-1].button("Step", key="live_step", disabled=over, type="primary",
                        on_click=lambda: _act(game, np.array([st.session_state[f"live_c{j}"] for j in range(len(low))],
                                                             np.float32).reshape(game.space.shape)),
                        **({"shortcut": "Enter"} if KEYS else {}))
    c1, c2 = st.columns(2)
    c1.number_input("Agent steps", 1, MAX_AGENT_STEPS, 10, key="live_n",
                    help="How many steps the agent takes before it hands the controls back.")
    c2.select_slider("Steps per second", SPEEDS, 10, key="live_speed",
                     help="How fast the agent's steps are played; press any button to take the controls back sooner.")
    c3, c4 = st.columns(2)
    c3.button("Let the agent act", key="live_agent", on_click=_hand_over, type="primary",
              disabled=over or game.view is None, width="stretch",
              help=game.why_no_agent or "The agent takes the next steps with its own actions, shown one by one at the "
                                        "chosen speed, then hands back.")
    if c4.button("New episode", key="live_new", width="stretch"):
        st.session_state.pop("live_settings", None)
        st.rerun()


def _status(game: LiveGame) -> None:
    c1, c2 = st.columns(2)   # two by two: four metrics in half the page cut their labels
    c3, c4 = st.columns(2)
    c1.metric("Step", game.t)
    c2.metric("Return earned", f"{game.episode_return:g}")
    if game.rtg is not None:
        c3.metric("Return-to-go", f"{game.rtg:.1f}", help="The target less every reward so far: what the DT is asked for.")
    if game.view is not None and game.view.value is not None and not game.done:
        c4.metric("Value", f"{game.view.value:.1f}", help="The DT's value head: the return it infers from the history "
                                                          "with the return-to-go hidden.")
    if game.done:
        end = "terminated" if game.terminated else "reached its step limit"
        st.success(f"The episode {md_escape(end)} after {int(game.t)} steps with return {game.episode_return:g}. Press New episode "
                   "to play again.")
    elif game.t:
        who = "the agent" if game.by_agent[-1] else "you"
        st.caption(f"Last step by {md_escape(who)}: {md_escape(game.action_text(game.actions[-1]))}, "
                   f"reward {game.rewards[-1]:g}.")


def _frame(game: LiveGame) -> None:
    if game.shaped:   # a MiniGrid view / an Atari stack: the agent's own view beside the full render
        picture = game.view_frame()
        if picture is not None:
            full = "" if game.render_why is None else f" (no full render: {md_escape(game.render_why)})"
            st.image(picture, caption=f"{md_escape(game.env_id)}, step {game.t}: the agent's view (left) beside the "
                                      f"game{full}", width="content")
            return
    frame = game.frame()
    if frame is not None:
        k = max(1, 288 // frame.shape[0])   # pixel art (Key-to-Door, 96 px) scaled by whole pixels: crisp, not blurred
        st.image(frame.repeat(k, 0).repeat(k, 1), caption=f"{game.env_id}, step {game.t}",
                 width="stretch" if k == 1 else "content")
    else:
        st.info(f"No frame here: {md_escape(game.render_why)}. The observation stands in.")
        names = envs.OBS_NAMES.get(game.env_id) or [f"x{i}" for i in range(len(game.observations[-1]))]
        st.dataframe({"feature": names, "value": game.observations[-1]}, hide_index=True)


def _animate(game: LiveGame, steps: int, slot, note) -> None:
    """The agent's turn, a step at a time at the chosen speed: each step's frame replaces the last in `slot` and `note`
    says what it did, so the turn plays as an animation inside one run. Any click reruns the fragment, which ends the
    turn where it is (the game keeps the steps taken)."""
    period = 1.0 / float(st.session_state.get("live_speed", 10))
    due = time.monotonic()
    try:
        for n in game.agent_steps(steps):
            with slot.container():
                _frame(game)
            note.caption(f"The agent acts: step {game.t:d} ({n:d} of {steps:d}), "
                         f"{md_escape(game.action_text(game.actions[-1]))}, reward {game.rewards[-1]:g}.")
            due += period
            time.sleep(max(0.0, due - time.monotonic()))
    except LiveError as e:
        st.session_state["live_error"] = str(e)
    note.empty()


@st.fragment
def _play(game: LiveGame) -> None:
    """The game: a step reruns only this (the page's settings and agent stay as they are)."""
    pending = st.session_state.pop("live_pending", 0)
    left, right = st.columns([1, 1])
    with left:
        slot, note = st.empty(), st.empty()
        aside = right.empty()   # the agent's view; while it acts, a line saying it comes back after its turn
        if pending and game.view is not None and not game.done:
            aside.caption("The agent has the controls: its policy, value and attention show again when it hands "
                          "them back.")
            _animate(game, pending, slot, note)
        error = st.session_state.pop("live_error", None)
        if error:
            st.error(md_escape(error))
        with slot.container():
            _frame(game)
        _controls(game)
        _status(game)
    with aside.container():
        view = game.view
        if view is None:
            st.info(md_escape(game.why_no_agent) + " Pick one on the home page (e.g. cartpole-dt) to see its view.")
        elif game.done:
            st.info("The episode is over: the agent has nothing more to decide.")
        else:
            taken = int(view.chosen) if game.discrete else None
            charts.plotly(figs.proposal(view.proposed, game.discrete, game.labels or game.act_names, taken), "live_policy")
            if view.attention is not None:
                charts.plotly(figs.attention(view.attention), "live_attention")
    if game.view is not None and game.target is not None and game.track:   # a DT: return-to-go and value
        h = game.history()
        charts.plotly(figs.value_track(h["rtg"], h["value"], h["earned"], h["by_agent"]), "live_track")
    if game.t:   # the game so far as GIF / MP4 / CSV, drawn and encoded only when a button is pressed
        clip, data = game.clip()
        exports.video_buttons(Figured("live_play", None, data, {"seed": game.seed, "target_return": game.target},
                                      video=clip), "live_video")


settings = _settings()
game = _game(settings)
if game is None:
    st.stop()
_play(game)
st.caption("The agent reads your actions as its own: its next step sees the action you took. Its attention is where "
           "information can flow, not proof that it is used. Arrow keys press the action buttons where shown.")
