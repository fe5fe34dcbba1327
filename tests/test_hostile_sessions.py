"""Strangers, round two (issue 26), the session items: sessions never see each other's names through a shared
cache entry (content keys cover everything a page shows), and text from URLs and files is never Markdown (one
helper, ui/text.md_escape, in every st.* message that quotes a user-controlled value)."""
from __future__ import annotations

import ast
import re
import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from streamlit.testing.v1 import AppTest

from analysis.core.identity import agent_key, dataset_key, stamp_agent, stamp_dataset
from models import load_agent
from trajectories import Dataset, load_dataset
from conftest import page_texts

ROOT = Path(__file__).resolve().parent.parent
AGENTS = ROOT / "sample_data" / "agents"




# ---- item 4: content keys cover everything a page shows ------------------------------------------------------
def _csv(names: list[str]) -> bytes:
    """Three 30-step CartPole-sized episodes; only the observation column names vary between calls."""
    rows = [{"episode": e, "step": t, **{f"obs_{n}": v for n, v in zip(names, (t * 0.1, 0.2, -t * 0.05, 0.01 * e))},
             "action": t % 2, "reward": 1.0} for e in range(3) for t in range(30)]
    return pd.DataFrame(rows).to_csv(index=False).encode()


SECRET = ["cartsecretalpha", "polesecretbeta", "anglesecretgamma", "spinsecretdelta"]
PUBLIC = ["cartpublic", "polepublic", "anglepublic", "spinpublic"]


def _session(names: list[str], page: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.run()
    at.file_uploader(key="upload_dataset").upload("data.csv", _csv(names), "text/csv").run()
    assert not at.exception and at.session_state["dataset"] == "upload: data.csv", at.exception
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


@pytest.mark.parametrize("page", ["views/4_Credit_assignment.py", "views/9_Episode_player.py"])
def test_two_sessions_uploading_the_same_arrays_under_other_names_see_their_own_names(page):
    from analysis.core.cache import CACHE

    CACHE.clear()
    a = _session(SECRET, page)
    assert SECRET[1] in page_texts(a)               # the page shows the feature names (else this test shows nothing)
    b = _session(PUBLIC, page)                  # the same arrays, the same file name, other column names
    shown = page_texts(b)
    assert PUBLIC[1] in shown
    assert not any(s in shown for s in SECRET), "session B was shown session A's names"
    del a, b


def _ds(**change) -> Dataset:
    rng = np.random.default_rng(3)
    n = 12
    base = dict(observations=rng.normal(size=(n, 2)).astype(np.float32), actions=rng.integers(0, 2, n),
                rewards=np.ones(n, np.float32), terminated=np.eye(1, n, 5, dtype=bool)[0], truncated=np.zeros(n, bool),
                episode_starts=np.array([0, 6]), obs_names=["x", "v"], act_names=None, n_actions=None,
                env_id="CartPole-v1", source="a.csv", metadata={"format": "csv"}, infos={})
    return Dataset(**{**base, **change})


@pytest.mark.parametrize("change", [
    {"obs_names": ["x", "secret"]}, {"act_names": ["push"]}, {"n_actions": 3}, {"env_id": "Acrobot-v1"},
    {"env_id": None}, {"source": "b.csv"}, {"metadata": {"format": "csv", "note": "secret"}},
    {"metadata": {"format": "csv", "action_labels": ["left", "right"]}},
    {"metadata": {"format": "csv", "episode_ids": np.array([0, 1])}},
    {"infos": {"qpos": np.zeros((12, 2)), "qvel": np.zeros((12, 2))}},
], ids=lambda c: next(iter(c)))
def test_dataset_key_differs_when_anything_shown_differs_and_the_training_fingerprint_does_not(change):
    base, other = _ds(), _ds(**change)
    assert dataset_key(other) != dataset_key(base)
    assert dataset_key(stamp_dataset(_ds(**change))) == dataset_key(other) != dataset_key(stamp_dataset(_ds()))
    assert other.fingerprint() == base.fingerprint()   # what agents store of their training data: arrays only


def test_dataset_key_is_equal_for_equal_content_and_sees_arrays_inside_metadata():
    assert dataset_key(_ds()) == dataset_key(_ds()) == dataset_key(stamp_dataset(_ds()))
    assert dataset_key(_ds(metadata={"b": 1, "a": [1, 2]})) == dataset_key(_ds(metadata={"a": [1, 2], "b": 1}))
    # numpy prints long arrays with "...": two arrays that print alike must still key apart
    big = np.arange(5000)
    assert str(big) == str(big + np.eye(1, 5000, 2500, dtype=int)[0])
    assert dataset_key(_ds(metadata={"ids": big})) != dataset_key(_ds(metadata={"ids": big + np.eye(1, 5000, 2500, dtype=int)[0]}))
    # 1 and "1" and 1.0 are shown differently
    keys = {dataset_key(_ds(metadata={"v": v})) for v in (1, "1", 1.0, True, None, [1], (1,))}
    assert len(keys) >= 6


def test_datasets_read_from_files_differing_only_in_names_key_apart(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "data.csv").write_bytes(_csv(SECRET))
    (tmp_path / "b" / "data.csv").write_bytes(_csv(PUBLIC))
    a, b = (stamp_dataset(load_dataset(tmp_path / d / "data.csv", display_name="data.csv")) for d in "ab")
    assert a.source == b.source and a.fingerprint() == b.fingerprint()
    assert dataset_key(a) != dataset_key(b)


def test_agent_key_covers_what_pages_show_of_an_agent():
    a = load_agent(AGENTS / "cartpole-dt").eval()
    key = agent_key(a)
    for change in ({"env_id": "CartPole-v0"}, {"dataset": {**a.config.dataset, "name": "secret"}},
                   {"hparams": {**a.config.hparams, "note": "secret"}}):
        b = copy.deepcopy(a)
        for k, v in change.items():
            setattr(b.config, k, v)
        assert agent_key(b) != key, change
    b = copy.deepcopy(a)
    b.notes = ["agent.zip: ignored 1 zip member that an agent does not use (secret.txt)."]
    assert agent_key(b) != key and agent_key(stamp_agent(b)) == agent_key(b)
    b = copy.deepcopy(a)
    b.__dict__["input_choices"] = {"normalize_from": "upload: secret.csv"}
    assert agent_key(b) != key
    c = copy.deepcopy(a)
    with torch.no_grad():
        next(c.parameters()).add_(1.0)
    assert agent_key(c) != key and agent_key(copy.deepcopy(a)) == key


# ---- item 5: text from URLs and files is never Markdown ------------------------------------------------------
# st.* calls whose text Streamlit renders as Markdown: the argument(s) named here, by position or keyword
MARKDOWN_CALLS = {"error": (0, "body"), "warning": (0, "body"), "info": (0, "body"), "success": (0, "body"),
                  "exception": (), "caption": (0, "body"), "markdown": (0, "body"), "write": ("*",),
                  "toast": (0, "body"), "title": (0, "body"), "header": (0, "body"), "subheader": (0, "body"),
                  "spinner": (0, "text"), "progress": (1, "text"), "expander": (0, "label"), "status": (0, "label"),
                  "help": ()}
NUMERIC_SPEC = re.compile(r"^[^{}]*[,_]?(\.\d+)?[bcdeEfFgGnoxX%]$|^[^{}]*[,_](\.\d+)?$")   # ints and floats only
NUMBER_CALLS = {"int", "float", "len", "round", "abs", "bool"}
HELPER = "md_escape"
# Variables holding text the code wrote (no user value in it), each with why it is safe: (file, argument source)
TRUSTED = {
    ("ui/page.py", "intro"): "each page's constant introduction, with intended Markdown",
}


def _safe(node: ast.AST) -> bool:
    """Is this expression text the code wrote, or a value that went through ui.text.md_escape?"""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, (str, int, float, bool)) or node.value is None
    if isinstance(node, ast.Call):
        f = node.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
        if name == HELPER or name in NUMBER_CALLS:
            return True
        if name == "format" and isinstance(f, ast.Attribute):   # "...{}...".format(a, b)
            return _safe(f.value) and all(_safe(a) for a in node.args) and all(_safe(k.value) for k in node.keywords)
        if name == "join" and isinstance(f, ast.Attribute):       # ", ".join(md_escape(x) for x in xs)
            return _safe(f.value) and len(node.args) == 1 and _safe_items(node.args[0])
        return False
    if isinstance(node, ast.JoinedStr):
        return all(_safe(v) for v in node.values)
    if isinstance(node, ast.FormattedValue):
        spec = ast.unparse(node.format_spec)[2:-1] if node.format_spec is not None else ""
        return _safe(node.value) or (node.conversion == -1 and bool(NUMERIC_SPEC.match(spec)))
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
        right = node.right.elts if isinstance(node.right, ast.Tuple) else [node.right]
        return _safe(node.left) and all(_safe(r) for r in right)
    if isinstance(node, ast.IfExp):
        return _safe(node.body) and _safe(node.orelse)
    if isinstance(node, ast.BoolOp):
        return all(_safe(v) for v in node.values)
    if isinstance(node, (ast.Name, ast.Attribute)):          # module constants: UPLOAD_LIMIT_MB, names.X
        last = node.id if isinstance(node, ast.Name) else node.attr
        return last.isupper()
    if isinstance(node, ast.Compare):                         # a bool
        return True
    return False


def _safe_items(node: ast.AST) -> bool:
    if isinstance(node, (ast.GeneratorExp, ast.ListComp)):
        return _safe(node.elt)
    if isinstance(node, (ast.List, ast.Tuple)):
        return all(_safe(e) for e in node.elts)
    return False


def _receiver_is_streamlit(f: ast.Attribute) -> bool:
    """st.x, st.sidebar.x, a column / container / placeholder (c1.caption, cols[0].caption, bar.progress);
    not a logger (log.info, log.error)."""
    base = f.value
    while isinstance(base, (ast.Attribute, ast.Subscript, ast.Call)):
        base = base.value if not isinstance(base, ast.Call) else base.func
    return not (isinstance(base, ast.Name) and base.id in {"log", "logger", "logging", "warnings", "parser", "self"})


def unescaped_markdown(path: Path) -> list[str]:
    """Every argument of an st.* Markdown call in `path` that is neither text the code wrote nor passed through the
    helper: `file:line: call(argument)`."""
    rel = path.relative_to(ROOT).as_posix()
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        which = MARKDOWN_CALLS.get(node.func.attr)
        if which is None or not _receiver_is_streamlit(node.func):
            continue
        args = list(node.args) if "*" in which else [node.args[i] for i in which if isinstance(i, int) and i < len(node.args)]
        args += [k.value for k in node.keywords if k.arg in which or k.arg == "help"]
        for arg in args:
            source = ast.unparse(arg)
            if not _safe(arg) and (rel, source) not in TRUSTED:
                found.append(f"{rel}:{node.lineno}: {node.func.attr}({source})")
    return found


def _app_sources() -> list[Path]:
    return sorted([*(ROOT / "views").glob("*.py"), *(ROOT / "ui").glob("*.py"), ROOT / "home.py", ROOT / "app.py"])


def test_no_st_message_quotes_a_value_without_the_escaping_helper():
    found = [line for p in _app_sources() for line in unescaped_markdown(p)]
    assert not found, "st.* Markdown calls quoting values without ui.text.md_escape:\n" + "\n".join(found)


def test_the_source_check_finds_what_it_should(tmp_path):
    bad = ['st.warning(f"Cannot compare {name} with {wanted}")', "st.error(str(e))", "st.sidebar.success(msg)",
           'c1.caption("Read from " + path)', 'st.info("{} rows".format(name))', 'st.markdown("%s" % name)',
           'bar.progress(0.5, text=f"Loading {file.name}")', 'st.caption(", ".join(names))',
           'st.toast(f"{x!r}")', 'st.write(f"{value:>10}")', 'st.success("ok", help=f"{name}")']
    good = ['st.warning(f"Cannot compare {md_escape(name)} with {md_escape(wanted)}")', "st.error(md_escape(str(e)))",
            'st.caption(f"{n:,} steps, {x:.3g}, {len(names)} names, {int(k)} of {LIMIT_MB} MB")',
            'st.caption(", ".join(md_escape(n) for n in names))', 'log.error(f"{name}")', 'st.info("plain")',
            'st.markdown("**bold** " + md_escape(name))', 'st.write("a", md_escape(b))']
    for i, line in enumerate(bad + good):
        (tmp_path / f"{i}.py").write_text(line + "\n")
    flagged = [bool(unescaped_markdown_at(tmp_path / f"{i}.py")) for i in range(len(bad + good))]
    assert flagged == [True] * len(bad) + [False] * len(good), list(zip(bad + good, flagged))


def unescaped_markdown_at(path: Path) -> list[str]:
    global ROOT
    saved, ROOT = ROOT, path.parent   # noqa: PLW0603 - relative names for a file outside the repository
    try:
        return unescaped_markdown(path)
    finally:
        ROOT = saved


# the escaping helper itself
from ui.text import WORD_JOINER, md_escape  # noqa: E402

EVIL = "[click](https://evil.example)![x](https://evil.example/x.png)"


def _markdown_it():
    markdown_it = pytest.importorskip("markdown_it")
    return markdown_it.MarkdownIt("commonmark").enable(["table", "strikethrough"])


def _only_text(md, escaped: str) -> str:
    """The text CommonMark (+ GFM tables and strikethrough) reads from `escaped`; fails on any other element."""
    tokens = md.parse(escaped)
    kinds = [t.type for t in tokens]
    assert kinds in ([], ["paragraph_open", "inline", "paragraph_close"]), (escaped, kinds)
    if not tokens:
        return ""
    children = [c.type for c in tokens[1].children]
    assert set(children) <= {"text", "softbreak"}, (escaped, children)
    return "".join(c.content if c.type == "text" else "\n" for c in tokens[1].children)


@pytest.mark.parametrize("value", [
    EVIL, "<https://evil.example>", "<img src=x onerror=alert(1)>", "**bold** and __bold__", "*em* _em_ a_b_",
    "`code` and ``code``", "# heading", "## heading", "- item", "+ item", "* item", "1. item", "12) item", "> quote",
    "| a | b |\n|---|---|\n| 1 | 2 |", "~~strike~~", "&amp; &#x3C;", "trailing \\", "a\\*b", "title\n===",
    "title\n---", "***", "___", "[ref]: https://evil.example", "[^1]", "x\n- item\n1. item\n# h",
    "![x](data:image/png;base64,AAAA)", "  - indented item",
])
def test_md_escape_leaves_nothing_for_markdown_to_render(value):
    md = _markdown_it()
    assert _only_text(md, md_escape(value)) == "\n".join(line.strip(" ") for line in value.split("\n"))


@pytest.mark.parametrize("value", [
    "one.csv has 1 step; a PCA embedding needs at least 3.", "obs_0 has a missing value (NaN) at row 2 of broken.csv.",
    "Loaded my-mlp.zip: a mlp agent, K = 1.", "Removed the oldest upload (d0.csv) to stay within 8 uploads.",
    "cartpole.npz has 4 observation features but the tt agent expects 3 (it was trained on Pendulum-v1).",
    "Drawn by CartPole-v1 from the logged observations.", "randomized copy of cartpole-dt", "local: my-dt", "-3.5e-07",
    "/tmp/pytest-of-me/test_bad_path0/notes.txt: unknown file type '.txt' (expected .npz, .hdf5/.h5, 100%).",
])
def test_md_escape_leaves_ordinary_sentences_as_they_are(value):
    assert md_escape(value) == value


def test_md_escape_breaks_what_streamlit_adds_to_markdown():
    # GitHub autolinks (bare URLs, www., e-mail), LaTeX, colour / icon directives and emoji shortcodes
    assert "https\\://evil.example" in md_escape("see https://evil.example")
    assert md_escape("www.evil.example") == "www\\.evil.example"
    assert md_escape("mail me@evil.example") == "mail me\\@evil.example"
    assert md_escape("$x^2$ and $$y$$") == "\\$x^2\\$ and \\$\\$y\\$\\$"
    assert md_escape(":red[Your session expired]") == "\\:red\\[Your session expired\\]"
    assert md_escape("a :smile: b") == f"a \\:{WORD_JOINER}smile: b"
    assert md_escape(":material/home:") == f"\\:{WORD_JOINER}material/home:"
    assert md_escape("{#id .class}") == "\\{#id .class\\}"
    assert md_escape(42) == "42" and md_escape(None) == "None"
    # Streamlit's own test for an emoji shortcode (StreamlitMarkdown's hm) no longer matches
    assert not re.search(r":(?!material\/|streamlit:)[\w+-][\w_+-]*:", md_escape("x :smile: :material/home: :streamlit:"))


def test_md_escape_round_trips_any_text():
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import strategies as hs

    md = _markdown_it()
    alphabet = hs.sampled_from(list("abc019 _*`[]()<>!#+-=.:|{}~$&@\\^'\"/;%") + ["www.", "http://", ":x:", "\n", "](", "![", "[x]", "**", "<a>", "1. ", "- "])

    plain = hs.lists(alphabet, max_size=24).map("".join)
    templates = ["[{}]({})", "![{}]({})", "<{}>", "*{}*", "_{}_", "`{}`", "~~{}~~", "${}$", "$${}$$", "**{}**",
                 "{}\n---\n{}", "# {}\n{}", "> {}", "1. {}\n2) {}", "| {} | {} |\n|---|---|", "[{}]: {}", "&{};"]
    marked = hs.tuples(hs.sampled_from(templates), plain, plain).map(lambda t: t[0].format(t[1], t[2]))

    @hypothesis.settings(max_examples=600, deadline=None, derandomize=True)
    @hypothesis.given(hs.one_of(plain, marked, hs.lists(marked, max_size=3).map(" ".join)))
    def check(value):
        # paragraph text as CommonMark keeps it: lines without their leading / trailing blanks, no blank lines
        lines = [line.strip(" ") for line in value.split("\n")]
        value = "\n".join(line for line in lines if line)
        got = _only_text(md, md_escape(value)).replace(WORD_JOINER, "")
        assert got == value, (value, md_escape(value))

    check()


def test_a_crafted_compare_url_shows_as_text():
    at = AppTest.from_file(str(ROOT / "views" / "2_Attention.py"), default_timeout=180)
    at.session_state["agent"], at.session_state["dataset"] = "cartpole-dt", "cartpole"
    at.query_params["compare"] = EVIL
    at.run()
    assert not at.exception, at.exception
    warnings = [w.value for w in at.warning]
    assert len(warnings) == 1 and md_escape(EVIL) in warnings[0], warnings
    body = warnings[0]
    assert EVIL not in body and not re.search(r"(?<!\\)[\[\]<]|(?<!\\):/", body), body
    html = _markdown_it().render(body)
    assert "<a " not in html and "<img" not in html and EVIL in html.replace("&quot;", '"'), html
    assert "compare" not in at.query_params
