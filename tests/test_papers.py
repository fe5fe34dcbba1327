"""The papers' numbers beside ours (issue 15, item 8): the rows carry the paper's value, the setting, and our pooled
number on the closest metric; the report prints them under each finding."""
from analysis.research import papers
from analysis.research.reproduce import context_pomdp
from test_reproduce import StopAt


def test_context_rows_carry_the_dt_papers_ratios_and_ours():
    f = context_pomdp({"k20": StopAt(30, "dt"), "k1": StopAt(10, "dt"), "gru": StopAt(40, "gru"), "mlp": StopAt(5, "mlp")},
                      episodes=2)
    rows = papers.paper_rows(f)
    assert [r["setting"].split(",")[0] for r in rows] == ["Atari Breakout", "Atari Qbert", "Atari Pong", "Atari Seaquest"]
    assert [r["paper_value"] for r in rows] == [round(267.5 / 73.9, 2), round(15.1 / 13.6, 2), round(106.1 / 2.5, 2),
                                                round(2.5 / 0.6, 2)]
    assert all(r["ours_metric"] == "k20_over_k1" and r["ours"]["estimate"] == 3.0 and r["ours"]["n_seeds"] == 1
               for r in rows)
    md = "\n".join(papers.papers_md(f))
    assert "| return with context / return with K=1 | Chen et al. 2021 (Decision Transformer), Table 5 |" in md
    assert "| 3.62 | `k20_over_k1` 3 [3, 3] |" in md
    assert f.to_json()["papers"] == rows


def test_key_door_rows_and_a_finding_without_a_matching_setting():
    class F:
        id, pooled = "key_to_door", {"dt_success": {"estimate": 0.86, "ci_low": 0.8, "ci_high": 0.9, "n_seeds": 5}}
    rows = papers.paper_rows(F)
    assert [(r["quantity"], r["paper_value"]) for r in rows] == [
        ("success rate, DT", 0.718), ("success rate, BC", 0.014), ("success rate, DT", 0.946), ("success rate, BC", 0.016)]
    assert rows[0]["ours"]["estimate"] == 0.86 and rows[1]["ours"] is None     # mlp_success not pooled: not measured
    assert "not measured" in "\n".join(papers.papers_md(F))

    class R:
        id, pooled = "return_conditioning", {}
    assert papers.paper_rows(R) == [] and papers.papers_md(R) == []
