"""Text from URLs and files is never Markdown: the one helper every st.* message uses for a value it quotes.

Streamlit renders the body of st.error / warning / info / success / caption / markdown / write / toast (and the
sidebar's) as Markdown with GitHub's extensions, LaTeX (`$...$`), colour and icon directives (`:red[...]`,
`:material/...:`) and emoji shortcodes (`:smile:`). A URL parameter, an uploaded file's name, a column name or a
reader's error sentence (which quotes file names and values) put into such a body unescaped could show a link
(`[click](https://...)`), load a remote image (`![x](https://...)`), or restyle a trusted page. `md_escape` makes
a value show as the characters it is, wherever it sits in a message:

    st.warning(f"Cannot compare {md_escape(a)} with {md_escape(b)}: ...")
    st.error(md_escape(str(e)))          # a whole sentence from a reader

Every character that can open Markdown where it stands is backslash-escaped (CommonMark lets any ASCII punctuation
be escaped; the escape shows as the bare character). Characters that are inert where they stand are left alone,
so an ordinary sentence ("data.csv has 1 step.", "obs_0 has a missing value (NaN)") is unchanged and reads the
same in logs and tests:

- always: ``\\ ` * [ ] < > ~ $ | { } & @`` (links, images, code, emphasis, HTML, autolinks, strikethrough, math,
  tables, directive attributes, entities, e-mail autolinks);
- `_` unless between two letters or digits (`obs_0` cannot open emphasis; `_x_` can);
- `:` before anything but whitespace (`https://` autolinks, `:red[...]` directives); an emoji or icon shortcode
  (`:smile:`, `:material/home:`) also gets an invisible word joiner (U+2060) after its first colon, because
  Streamlit matches those after the escapes are resolved;
- `.` after `www` (GitHub's `www.` autolinks);
- at the start of a line (after spaces): `# - + =` unless a letter or digit follows (headings, lists, rules,
  setext underlines; `-3.5` stays as it is), and the `.` or `)` of `1.` / `1)` before a space (ordered lists).
"""
from __future__ import annotations

import re

__all__ = ["md_escape"]

_ALWAYS = frozenset("\\`*[]<>~$|{}&@")
_LINE_START = frozenset("#-+=")
_SHORTCODE = re.compile(r"[\w+/-]+:")          # after a colon: the rest of `:smile:` or `:material/home:`
_ORDERED = re.compile(r"\d{1,9}[.)](?=\s|$)")   # `1.` / `12)` followed by a space or the end
WORD_JOINER = "\u2060"


def md_escape(value) -> str:
    """`value` (any object: str() of it) as Markdown that Streamlit shows literally."""
    s = str(value)
    line_start = {0} | {m.end() for m in re.finditer(r"\n", s)}
    # the first non-blank character of each line, and the delimiter of an ordered-list marker there
    heads, delimiters = set(), set()
    for start in line_start:
        j = start
        while j < len(s) and s[j] in " \t":
            j += 1
        heads.add(j)
        m = _ORDERED.match(s, j)
        if m:
            delimiters.add(m.end() - 1)
    out = []
    for i, ch in enumerate(s):
        prev, nxt = s[i - 1] if i else "", s[i + 1] if i + 1 < len(s) else ""
        if ch in _ALWAYS or (ch in _LINE_START and i in heads and not nxt.isalnum()) or i in delimiters:
            out.append("\\" + ch)
        elif ch == "_":
            out.append("_" if prev.isalnum() and nxt.isalnum() else "\\_")
        elif ch == ":" and nxt and not nxt.isspace():
            out.append("\\:" + (WORD_JOINER if _SHORTCODE.match(s, i + 1) else ""))
        elif ch == "." and s[max(i - 3, 0):i].lower() == "www":
            out.append("\\.")
        else:
            out.append(ch)
    return "".join(out)
