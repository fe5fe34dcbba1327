"""The layout pass every page chart and export goes through (analysis/publish/figures/fit.py): text wrapped to the
width the figure is drawn at, room reserved for it, the figure's own object never changed. The browser gallery
(tests/test_browser_gallery.py) checks the result in Chromium; these check the arithmetic."""
from __future__ import annotations

import plotly.graph_objects as go
import pytest
from plotly.subplots import make_subplots

from analysis.publish.figures import TEMPLATE
from analysis.publish.figures.fit import LINE, fit, plain_text, text_width, wrap_markup

LONG = ("Predicted vs real: the dynamics model's open-loop prediction of every observation feature against the logged "
        "action (push right)")
SUB = "episode 3, steps 5–45 · horizon 40 · mean absolute error 0.123 over 4 features · trained on cartpole.npz"


def figure(title: str, **layout) -> go.Figure:
    fig = go.Figure([go.Scatter(y=[1, 2, 3], name="real"), go.Scatter(y=[2, 1, 3], name="predicted")])
    fig.update_layout(template=TEMPLATE, title=title, **layout)
    return fig


def lines(markup: str) -> list[str]:
    return markup.split("<br>")


def test_text_width_reads_entities_as_one_character_and_tags_as_nothing():
    assert text_width("&lt;a&gt;", 10) == pytest.approx(text_width("<a>".replace("<", "\u2264"), 10), abs=3)
    assert text_width("<sup>abc</sup>", 10) == text_width("abc", 10)
    assert text_width("iiii", 10) < text_width("mmmm", 10) / 3     # DejaVu's narrow and wide letters
    assert text_width("unknown 漢", 10) == pytest.approx(text_width("unknown ", 10) + 10)


def test_wrap_breaks_at_spaces_within_the_width_and_never_inside_an_entity():
    out = wrap_markup(LONG, 300, 17)
    assert len(out) >= 3 and " ".join(out) == LONG
    assert all(text_width(line, 17) <= 300 for line in out)
    word = "&lt;" * 40                                   # one long word of entities: split, but never inside one
    parts = wrap_markup(word, 100, 14)
    assert len(parts) > 1 and "".join(parts) == word and all(p.count("&") == p.count(";") for p in parts)


def test_a_tag_shown_as_text_stays_on_one_line():
    name = '&lt;a href=&quot;https:evil.example&quot;&gt;x&lt;/a&gt;'
    out = wrap_markup(f"Episode returns — {name} and more words", 400, 17)
    assert any('&lt;a href=&quot;https:evil.example&quot;&gt;' in line for line in out)
    assert " ".join(out) == f"Episode returns — {name} and more words"


def test_a_long_title_and_subtitle_wrap_to_the_width_and_the_top_margin_holds_them():
    fig = figure(f"{LONG}<br><sup>{SUB}</sup>")
    before = fig.to_plotly_json()
    out = fit(fig, 500).figure
    assert fig.to_plotly_json() == before                # the cached figure is never changed
    text = out.layout.title.text
    main = [x for x in lines(text) if not x.startswith("<sup>")]
    subs = [x for x in lines(text) if x.startswith("<sup>")]
    assert len(main) >= 3 and len(subs) >= 2
    assert all(text_width(x, 17) <= 500 - 24 for x in main)
    assert all(text_width(x, 17 * 0.7) <= 500 - 24 for x in subs)
    assert plain_text(text) == plain_text(fig.layout.title.text)   # nothing lost when nothing is cut
    n = len(lines(text))
    assert out.layout.margin.t >= n * 17 * LINE
    assert (out.layout.title.yref, out.layout.title.yanchor) == ("container", "top")
    assert (1 - out.layout.title.y) * out.layout.height == pytest.approx(8 + 0.93 * 17)   # its first baseline
    # the plot area keeps its height: the figure grew by what the margin grew
    assert out.layout.height - out.layout.margin.t - out.layout.margin.b == pytest.approx(450 - 60 - 60)


def test_a_short_title_is_left_as_it_is_and_a_wide_figure_needs_fewer_lines():
    out = fit(figure("Episode returns"), 600).figure
    assert out.layout.title.text == "Episode returns" and out.layout.margin.t == 60 and out.layout.height == 450
    narrow, wide = fit(figure(LONG), 400).figure, fit(figure(LONG), 1600).figure
    assert len(lines(wide.layout.title.text)) == 1 < len(lines(narrow.layout.title.text))


def test_on_the_page_a_title_past_its_lines_is_cut_and_given_whole_as_the_caption():
    title = f"{LONG} &lt;b&gt;<br><sup>{SUB}</sup><br><sup>{SUB}</sup>"
    f = fit(figure(title), 330, max_title_lines=4)
    assert len(lines(f.figure.layout.title.text)) == 4 and f.figure.layout.title.text.endswith("…</sup>")
    assert f.caption == plain_text(title) and "<b>" in f.caption and "<sup>" not in f.caption
    assert fit(figure(title), 330).caption is None       # exports wrap it all


def test_a_horizontal_legend_gets_its_own_rows_between_title_and_plot():
    fig = figure(f"{LONG}<br><sup>{SUB}</sup>", legend=dict(orientation="h", y=1.12, x=1, xanchor="right"))
    out = fit(fig, 500).figure
    n = len(lines(out.layout.title.text))
    title_px = n * 17 * LINE + 12
    leg = out.layout.legend
    assert leg.yref == "container" and leg.yanchor == "top"
    top_px = (1 - leg.y) * out.layout.height
    assert top_px >= title_px                             # the legend starts under the title
    assert out.layout.margin.t >= top_px + 14 * LINE      # and the plot under the legend


def test_subplot_titles_wrap_to_their_column_and_push_the_plot_down():
    fig = make_subplots(rows=1, cols=2, subplot_titles=["trained agent on the key-pickup step of episode 3",
                                                        "randomized weights: Spearman ρ = 0.12 with trained"])
    fig.add_trace(go.Bar(y=[1, 2]), 1, 1)
    fig.add_trace(go.Bar(y=[2, 1]), 1, 2)
    fig.update_layout(template=TEMPLATE, title="Credit")
    out = fit(fig, 500).figure
    col_px = (500 - 70 - 30) * (out.layout.annotations[1].x - out.layout.annotations[0].x)
    for a in out.layout.annotations:
        assert len(lines(a.text)) >= 2 and all(text_width(x, 16) <= col_px for x in lines(a.text))
    n = max(len(lines(a.text)) for a in out.layout.annotations)
    assert out.layout.margin.t >= 17 * LINE + n * 16 * LINE


def test_a_footnote_wraps_inside_the_figure_and_the_bottom_margin_grows():
    fig = figure("t", margin=dict(b=80))
    fig.add_annotation(x=0, y=-0.2, xref="paper", yref="paper", xanchor="left", showarrow=False,
                       text="Bars: mean over episodes; whiskers: 95% interval; " * 4)
    out = fit(fig, 500).figure
    a = out.layout.annotations[0]
    assert len(lines(a.text)) >= 3 and all(text_width(x, 14) <= 500 - 70 for x in lines(a.text))
    plot_h = out.layout.height - out.layout.margin.t - out.layout.margin.b
    assert a.yanchor == "top"
    assert out.layout.margin.b >= -a.y * plot_h + len(lines(a.text)) * 14 * LINE


def test_axis_titles_wrap_to_their_axis_and_every_axis_may_push_its_margin():
    fig = figure("t", xaxis_title="patched token (ticks at each step's state token), from the clean run",
                 yaxis_title="share of |attribution| / uniform")
    out = fit(fig, 360).figure
    assert out.layout.xaxis.automargin is True and out.layout.yaxis.automargin is True
    assert len(lines(out.layout.xaxis.title.text)) >= 2
    centre = 70 + (360 - 70 - 30) / 2                     # a title is centred under its axis, inside the figure
    assert all(text_width(x, 17) <= 2 * (360 - centre) for x in lines(out.layout.xaxis.title.text))   # 1.2 × 14


def test_a_wide_fixed_left_margin_shrinks_to_its_labels_and_a_note_left_of_the_plot_keeps_it():
    heat = go.Figure(go.Heatmap(z=[[1, 2], [3, 4]], y=["layer 1", "layer 2"]))
    heat.update_layout(template=TEMPLATE, margin=dict(l=190))
    out = fit(heat, 262).figure
    assert 50 <= out.layout.margin.l < 120 and out.layout.margin.l >= text_width("layer 1", 14)
    heat.add_annotation(x=-0.3, y=0.5, xref="paper", yref="paper", text="rows", showarrow=False)
    assert fit(heat, 262).figure.layout.margin.l == 190


def test_exports_use_the_same_pass(monkeypatch):
    """figure_bytes lays the figure out for the image's width and grows its height to match."""
    import plotly.io as pio

    from analysis.publish import export

    seen = {}
    monkeypatch.setattr(pio, "to_image", lambda fig, **kw: seen.update(fig=fig, **kw) or b"png")
    fig = figure(f"{LONG}<br><sup>{SUB}</sup>")
    export.figure_bytes(fig, "png")
    assert seen["width"] == 900 and seen["height"] == int(round(seen["fig"].layout.height)) > 450
    assert "<br>" in seen["fig"].layout.title.text.split("<sup>")[0]       # the main title wrapped at 900 px
    export.figure_bytes(fig, "png", width=900, height=500)
    assert seen["height"] == 500                          # a height asked for is kept
    html = export.figure_bytes(fig, "html").decode()
    assert '"yref":"container"' in html.replace(" ", "")


def test_a_page_chart_is_drawn_at_the_width_its_text_was_fitted_for(monkeypatch):
    """ui.charts draws a chart at the width fit() wrapped it for (540 px; a wider figure's own width), centred, never
    stretched to a wide viewport's column (a title wrapped for 540 px over a 1140 px plot)."""
    import plotly.graph_objects as go

    from ui import charts

    drawn = []
    monkeypatch.setattr(charts.st, "plotly_chart", lambda fig, **kw: drawn.append((fig, kw)))
    monkeypatch.setattr(charts, "_columns_around", lambda: 0)
    long_title = "A title long enough to need more than one line at five hundred and forty pixels wide, " * 2
    charts.plotly(go.Figure(go.Scatter(y=[1, 2]), layout=dict(title=long_title)), key="k")
    (fig, kw), = drawn
    assert kw["width"] == charts.PAGE_WIDTH == 540 and kw["theme"] is None
    assert fig.layout.title.text.count("<br>") >= 1          # wrapped for those 540 px
    monkeypatch.setattr(charts, "_columns_around", lambda: 1)
    charts.plotly(go.Figure(go.Bar(y=[1])), key="half")
    assert drawn[-1][1]["width"] == int((540 - 16) / 2) == 262
    assert charts.drawn_width(go.Figure(layout=dict(width=1300)), 540) == 1300   # its own, narrowed by Streamlit
