"""Aggregation, anchors, plots and the HTML report on synthetic results with hand-computed numbers.

Nothing here pretrains: results are written by hand, as tables or as a fake run store.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ablate.analysis import aggregate, verdicts
from ablate.report import plots
from ablate.analysis.anchors import Claim, load_anchors, paper_table, paper_value, study_anchor, study_claims
from ablate.study.cells import RANDOM_INIT, expand
from ablate.study.identity import heldout_identity
from ablate.report.html import export_table, to_markdown, write_index, write_study_report
from ablate.report.tables import verdict_frame
from ablate.analysis.results import CURVE_COLUMNS, PRETRAIN_COLUMNS, SCORE_COLUMNS, StudyResults
from ablate.study.load import load_study
from ablate.study.spec import Config, RuntimeSpec, Seeds, StudySpec
from ablate.store import RunDir, Store, atomic_write_json
from ablate.tasks import TASKS

STUDIES = sorted((Path(__file__).resolve().parents[1] / "studies").glob("*.yaml"))
T3 = 3.182446  # Student t, 97.5% quantile, 3 degrees of freedom (any t table)
T2 = 4.302653  # ... 2 degrees of freedom

# (variant, pretrain_seed, task, metric) -> values over fine-tuning seeds
SCORES = {
    ("static", 0, "sst2", "accuracy"): [0.80, 0.82],
    ("static", 1, "sst2", "accuracy"): [0.84, 0.90],  # all four: median 0.83, mean 0.84
    ("dynamic", 0, "sst2", "accuracy"): [0.85, 0.86],
    ("dynamic", 1, "sst2", "accuracy"): [0.87, 0.88],  # median 0.865
    ("static", 0, "mrpc", "accuracy"): [0.70],
    ("static", 0, "mrpc", "f1"): [0.75],
    (RANDOM_INIT, None, "sst2", "accuracy"): [0.70, 0.72, 0.74],  # median 0.72
}


def make_study(description: str = "Static vs dynamic masking (paper Table 1).", paper: str | None = "table1"):
    return StudySpec(
        name="masking", description=description, paper_table=paper, scale="tiny", baseline="static",
        seeds=Seeds(pretrain=(0, 1), finetune=(0, 1)),
        variants={"static": Config(), "dynamic": Config()},
        runtime=RuntimeSpec(), source="name: masking\nvariants: {static: {}, dynamic: {}}\n", path="studies/masking.yaml",
    )


def make_results() -> StudyResults:
    rows = []
    for (variant, ps, task, metric), values in SCORES.items():
        for ft, v in enumerate(values):
            rows.append({"variant": variant, "pretrain_seed": ps, "task": task, "metric": metric,
                         "finetune_seed": ft, "value": v, "key": f"k{len(rows)}"})
    scores = pd.DataFrame(rows, columns=SCORE_COLUMNS)
    scores["pretrain_seed"] = scores["pretrain_seed"].astype("Int64")
    pre = pd.DataFrame([
        {"variant": v, "seed": s, "key": f"p{v}{s}", "heldout_ppl": ppl, "heldout_loss": math.log(ppl),
         "unigram_ppl": 900.0, "steps": 100, "tokens_seen": 200_000, "tokens_per_step": 2000, "flops": 1e12,
         "wall_s": 60.0, "tokens_per_s": 3333.3, "final_train_loss": 5.0}
        for v, s, ppl in [("static", 0, 120.0), ("static", 1, 140.0), ("dynamic", 0, 110.0), ("dynamic", 1, 112.0)]
    ], columns=PRETRAIN_COLUMNS)
    curves = pd.DataFrame([
        {"variant": v, "seed": s, "step": step, "loss": 9.0 - step / 50 - s * 0.1, "lr": 1e-3}
        for v in ("static", "dynamic") for s in (0, 1) for step in range(0, 101, 10)
    ], columns=CURVE_COLUMNS)
    failures = [{"stage": "finetune", "label": "dynamic/pt0/mrpc/ft1", "error": "RuntimeError: loss is NaN <boom>"}]
    return StudyResults(scores, pre, curves, failures, {"done": 17, "failed": 1, "pending": 2})


def empty_results() -> StudyResults:
    return StudyResults(pd.DataFrame(columns=SCORE_COLUMNS), pd.DataFrame(columns=PRETRAIN_COLUMNS),
                        pd.DataFrame(columns=CURVE_COLUMNS), [], {"done": 0, "failed": 0, "pending": 20})


def row(df: pd.DataFrame, **where) -> pd.Series:
    sel = df
    for k, v in where.items():
        sel = sel[sel[k] == v]
    assert len(sel) == 1, where
    return sel.iloc[0]


def test_summarize_hand_computed():
    s = aggregate.summarize(make_results().scores)
    r = row(s, variant="static", task="sst2", metric="accuracy")
    assert r["n"] == 4
    assert r["median"] == pytest.approx(0.83)
    assert r["mean"] == pytest.approx(0.84)
    # deviations -0.04, -0.02, 0, 0.06 -> sum of squares 0.0056, / (n-1)
    assert r["std"] == pytest.approx(math.sqrt(0.0056 / 3))
    half = T3 * math.sqrt(0.0056 / 3) / 2
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((0.84 - half, 0.84 + half), abs=1e-6)
    assert row(s, variant="dynamic", task="sst2", metric="accuracy")["median"] == pytest.approx(0.865)
    single = row(s, variant="static", task="mrpc", metric="f1")
    assert single["n"] == 1 and single["median"] == pytest.approx(0.75) and math.isnan(single["std"])
    assert math.isnan(single["ci_low"]) and math.isnan(single["ci_high"])
    assert aggregate.summarize(empty_results().scores).empty


def test_margin_is_median_minus_random_init_in_points():
    m = aggregate.pretraining_margin(aggregate.summarize(make_results().scores))
    assert set(m["variant"]) == {"static", "dynamic"} and set(m["task"]) == {"sst2"}  # mrpc has no control
    assert row(m, variant="static")["margin"] == pytest.approx(83.0 - 72.0)
    assert row(m, variant="dynamic")["margin"] == pytest.approx(86.5 - 72.0)
    assert row(m, variant="dynamic")["random_init_median"] == pytest.approx(72.0)
    assert aggregate.pretraining_margin(aggregate.summarize(empty_results().scores)).empty


def test_margin_is_against_each_variants_own_vocabularys_control():
    other = f"{RANDOM_INIT}:dynamic"
    extra = pd.DataFrame([{"variant": other, "pretrain_seed": None, "finetune_seed": ft, "task": "sst2",
                           "metric": "accuracy", "value": v} for ft, v in enumerate([0.60, 0.62, 0.64])])
    scores = pd.concat([make_results().scores, extra.reindex(columns=make_results().scores.columns)],
                       ignore_index=True)
    summary = aggregate.summarize(scores)
    m = aggregate.pretraining_margin(summary, controls={"static": RANDOM_INIT, "dynamic": other})
    assert row(m, variant="static")["margin"] == pytest.approx(83.0 - 72.0)  # the baseline vocabulary's control
    assert row(m, variant="dynamic")["margin"] == pytest.approx(86.5 - 62.0)  # its own vocabulary's
    assert row(m, variant="dynamic")["random_init_median"] == pytest.approx(62.0)
    assert set(m["variant"]) == {"static", "dynamic"}  # a control has no margin of its own
    plain = aggregate.pretraining_margin(summary)  # without the mapping: every variant against RANDOM_INIT
    assert row(plain, variant="dynamic")["margin"] == pytest.approx(86.5 - 72.0)
    assert aggregate.variant_rows(["static", "dynamic"], [other, RANDOM_INIT, "dynamic"]) == \
        ["static", "dynamic", RANDOM_INIT, other]  # controls last, the baseline vocabulary's first
    claims = study_claims("masking", "table1", ["static", "dynamic"], "static", RANDOM_INIT,
                          other_controls=[(other, "dynamic")])
    sanity = [(c.a, c.b, c.relation) for c in claims if c.source == "sanity"]
    assert sanity == [(RANDOM_INIT, "static", "worse"), (other, "dynamic", "worse")]


def test_paper_style_table_order_and_format():
    s = aggregate.summarize(make_results().scores)
    t = aggregate.paper_style_table(s, "accuracy", ["static", "dynamic"])
    assert list(t.index) == ["static", "dynamic", RANDOM_INIT]
    assert list(t.columns) == ["sst2", "mrpc"]
    std = math.sqrt(0.0056 / 3)
    half = T3 * std / 2  # t * std / sqrt(4)
    low, high = 100 * (0.84 - half), 100 * (0.84 + half)
    assert t.loc["static", "sst2"] == f"83.0 (84.0 ± {100 * std:.1f} [{low:.1f}, {high:.1f}], n=4)"
    assert t.loc["static", "mrpc"] == "70.0 (n=1)"
    assert t.loc["dynamic", "mrpc"] == aggregate.MISSING


def test_pretrain_table():
    p = aggregate.pretrain_table(make_results().pretrain)
    r = row(p, variant="static")
    assert r["n"] == 2 and r["heldout_ppl_median"] == pytest.approx(130.0)
    assert r["heldout_ppl_std"] == pytest.approx(math.sqrt(200.0))
    assert r["unigram_ppl_median"] == pytest.approx(900.0)


def test_anchors_table1():
    a = load_anchors()
    assert "arXiv:1907.11692" in a["citation"]
    t1 = paper_table("table1")
    assert t1.loc["dynamic", "squad_v2"] == 78.7 and t1.loc["static", "sst2"] == 92.5
    assert t1.loc["reference_bert", "mnli"] == 84.3
    assert list(paper_table("table1", "accuracy").columns) == ["mnli", "sst2"]
    assert paper_table("table3", "ppl").loc["bsz2k", "ppl"] == 3.68
    assert {"a": "dynamic", "b": "static"}.items() <= a["tables"]["table1"]["comparisons"][0].items()


def test_plots_handle_empty_frames():
    empty = empty_results()
    for fig in (plots.task_scores(empty.scores, "sst2", "accuracy"), plots.loss_curves(empty.curves)):
        assert "no data" in [t.get_text() for ax in fig.axes for t in ax.texts]
    fig = plots.task_scores(make_results().scores, "sst2", "accuracy", order=["static", "dynamic"])
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["static", "dynamic", RANDOM_INIT]


def cell(main: str, detail: str) -> str:
    """A table cell as the page shows it: the median, then its details on a line that breaks only between parts."""
    nb = re.sub(r"\[(\S+), ", "[\\1,\u00a0", detail).replace(" ± ", "\u00a0±\u00a0").replace(" vs ", "\u00a0vs\u00a0")
    return f'{main}<span class="detail">{nb}</span>'


def test_study_report_html(tmp_path):
    study = make_study(description="Masking <script>alert('x')</script> & friends")
    results = make_results()
    results.failures[0]["error"] = "RuntimeError: loss is NaN <boom> <script>alert(1)</script>"
    source = "name: masking  # <script>alert(2)</script>\nvariants: {static: {}, dynamic: {}}\n"
    study = study.model_copy(update={"source": source})
    path = write_study_report(study, results, tmp_path, {"git": {"commit": "abc123"}, "torch": "2.13.0"})
    assert path == tmp_path / "masking" / "index.html"
    html = path.read_text(encoding="utf-8")
    for text in ("static", "dynamic", RANDOM_INIT, "78.7", "92.9", "84.3", "arXiv:1907.11692",
                 cell("+11.0", "83.0 vs 72.0"), cell("+14.5", "86.5 vs 72.0"), cell("83.0", "84.0 ± 4.3 [77.1, 90.9] n=4"),
                 "git.commit", "abc123", "held-out MLM ppl", cell("130.0", "130.0 ± 14.1"),
                 cell("200,000", "200,000 ± 0"), "dynamic/pt0/mrpc/ft1",
                 "loss is NaN &lt;boom&gt;", "Verdicts", "seeds for 80% power", "The unit is the pretraining seed", "sst2 acc. (paper)", "Wall time per cell",
                 "<th>dynamic ≥ static (δ 1)</th><td>paper, table1</td>", "<th>random-init worse than static</th><td>expected</td>"):
        assert text in html, text
    # every study string with <script> is text, never markup
    assert "<script" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)" in html and "&lt;script&gt;alert(1)" in html and "&lt;script&gt;alert(2)" in html
    # sst2 and mrpc on their primary metric (accuracy), two forest plots (points, perplexity), loss, compute
    assert html.count("<svg") == 6
    assert "http://cdn" not in html and "<link" not in html and "src=" not in html
    assert "static: {}" in html  # the study source, escaped into a <pre>
    folder = path.parent
    summary = pd.read_csv(folder / "summary.csv")
    assert row(summary, variant="static", task="sst2", metric="accuracy")["median"] == pytest.approx(0.83)
    assert len(pd.read_csv(folder / "scores.csv")) == sum(len(v) for v in SCORES.values())
    cmp = pd.read_csv(folder / "comparisons.csv")
    # 3 random-init runs against 2 static checkpoints (81.0, 87.0): Welch over models, not over the 4 static runs
    ri = row(cmp, a=RANDOM_INIT, task="sst2")
    assert (ri["n_a"], ri["n_b"], ri["paired"]) == (3, 2, False) and ri["diff"] == pytest.approx(-12.0)
    assert ri["verdict"] == verdicts.INCONCLUSIVE  # two checkpoints leave Welch with about one degree of freedom
    for stem in ("table_verdicts", "table_scores", "table_other_metrics", "table_margin", "table_pretrain", "table_paper"):
        for ext in ("csv", "md", "tex"):
            assert (folder / f"{stem}.{ext}").stat().st_size > 30, (stem, ext)
        assert f'href="{stem}.tex"' in html
    md = (folder / "table_scores.md").read_text(encoding="utf-8")
    assert md.splitlines()[0] == "| variant | sst2 acc. | sst2 acc. (paper) | mrpc acc. |"
    assert "| static | 83.0 (84.0 ± 4.3 [77.1, 90.9], n=4) | 92.5 | 70.0 (n=1) |" in md
    other = (folder / "table_other_metrics.md").read_text(encoding="utf-8")
    assert other.splitlines()[0] == "| variant | mrpc F1 |" and "| static | 75.0 (n=1) |" in other
    tex = (folder / "table_verdicts.tex").read_text(encoding="utf-8")
    assert "\\toprule" in tex and "random-init worse than static" in tex


def test_exports_escape(tmp_path):
    df = pd.DataFrame({"a|b": ["x|y"], "c": ["50% of a_b & c"]}, index=pd.Index(["r"], name="variant"))
    assert to_markdown(df) == "| variant | a\\|b | c |\n|---|---|---|\n| r | x\\|y | 50% of a_b & c |\n"
    assert export_table(df, tmp_path, "t") == ["t.csv", "t.md", "t.tex"]
    assert "50\\% of a\\_b \\& c" in (tmp_path / "t.tex").read_text(encoding="utf-8")
    assert pd.read_csv(tmp_path / "t.csv").loc[0, "c"] == "50% of a_b & c"


def test_zero_results_report_and_index(tmp_path):
    path = write_study_report(make_study(paper=None), empty_results(), tmp_path, {})
    html = path.read_text(encoding="utf-8")
    assert "No results yet" in html and "20 of 20 cells are pending" in html
    assert "Pretraining margin over random init" in html  # the section is always there
    assert "No comparison has results" in html
    unknown = write_study_report(make_study(paper="table9"), empty_results(), tmp_path / "u", {})
    assert "not in the anchors" in unknown.read_text(encoding="utf-8")
    verdicts = {"paper": {"agrees": 2, "disagrees": 0, "inconclusive": 5}, "sanity": {"agrees": 1, "disagrees": 0,
                                                                                       "inconclusive": 0}}
    idx = write_index([{"name": "masking", "description": "a <b>study</b>", "scale": "tiny",
                        "counts": {"done": 3, "failed": 1, "pending": 2}, "verdicts": verdicts}], tmp_path)
    text = idx.read_text(encoding="utf-8")
    assert 'href="masking/index.html"' in text and "a &lt;b&gt;study&lt;/b&gt;" in text
    assert ">3<" in text and ">2<" in text
    assert "agrees 2" in text and "inconclusive 5" in text and "agrees 1" in text


# ---------------------------------------------------------------- differences and verdicts, by hand

BASE = [0.80, 0.82, 0.84, 0.86]


def verdict_values() -> pd.DataFrame:
    """Hand-made long table: four checkpoints per variant (pretraining seeds 0-3, one fine-tune each: the unit is
    the pretraining seed), three pretraining seeds of ppl."""
    arms = {
        "base": BASE,
        "better": [b + d for b, d in zip(BASE, [0.05, 0.06, 0.04, 0.05])],  # diffs: mean 5, std 0.8165 points
        "noisy": [b + d for b, d in zip(BASE, [0.05, -0.04, 0.03, -0.02])],  # diffs: mean 0.5, spans zero
        "one": [0.90],  # a single run: no interval
    }
    rows = [{"variant": v, "pretrain_seed": i, "finetune_seed": 0, "task": "sst2", "metric": "accuracy", "value": x}
            for v, xs in arms.items() for i, x in enumerate(xs)]
    rows += [{"variant": RANDOM_INIT, "pretrain_seed": pd.NA, "finetune_seed": i, "task": "sst2",
              "metric": "accuracy", "value": x} for i, x in enumerate([0.70, 0.72, 0.74])]
    scores = pd.DataFrame(rows, columns=SCORE_COLUMNS[:-1])
    scores["pretrain_seed"] = scores["pretrain_seed"].astype("Int64")
    pre = pd.DataFrame([{"variant": v, "seed": s, "heldout_ppl": ppl}
                        for v, ppls in (("base", [100.0, 110.0, 120.0]), ("better", [90.0, 101.0, 109.0]))
                        for s, ppl in enumerate(ppls)])
    return aggregate.values_long(scores, pre)


def claim(a: str, relation, tasks=None, paper=None) -> Claim:
    return Claim(a, "base", relation, tasks, "", "test", paper or {})


def test_paired_difference_interval_and_verdicts():
    v = verdict_values()
    half = T3 * math.sqrt(0.0002 / 3) / 2 * 100  # t * std / sqrt(n), in points
    cmp = verdicts.compare(v, [claim("better", ">", ("sst2",), {("sst2", "accuracy"): 1.0}),
                                claim("better", "<", ("sst2",)), claim("noisy", ">=", ("sst2",)),
                                claim("one", ">", ("sst2",)), claim("better", None, ("sst2",))])
    agree, disagree, noisy, one, none = (r for _, r in cmp.iterrows())
    assert agree["paired"] and agree["n"] == 4
    assert agree["diff"] == pytest.approx(5.0) and agree["spread"] == pytest.approx(100 * math.sqrt(0.0002 / 3))
    assert (agree["ci_low"], agree["ci_high"]) == pytest.approx((5.0 - half, 5.0 + half), abs=1e-6)
    assert agree["verdict"] == verdicts.AGREES and disagree["verdict"] == verdicts.DISAGREES
    assert agree["paper_diff"] == 1.0
    # spread 0.8165 points, effect 1 point: 80% power of a paired t-test (checked by simulation below)
    assert agree["seeds_needed"] == verdicts.seeds_needed(100 * math.sqrt(0.0002 / 3), 1.0)
    low, high = verdicts.spread_range(agree["spread"], 4)
    assert agree["seeds_needed_low"] <= agree["seeds_needed"] <= agree["seeds_needed_high"]
    assert (agree["seeds_needed_low"], agree["seeds_needed_high"]) == (verdicts.seeds_needed(low, 1.0),
                                                                       verdicts.seeds_needed(high, 1.0))
    assert noisy["diff"] == pytest.approx(0.5) and noisy["ci_low"] < 0 < noisy["ci_high"]
    assert noisy["verdict"] == verdicts.INCONCLUSIVE
    assert one["n"] == 1 and math.isnan(one["ci_low"]) and one["verdict"] == verdicts.INCONCLUSIVE
    assert none["verdict"] == verdicts.NO_CLAIM and pd.isna(none["seeds_needed"])


def test_lower_is_better_perplexity():
    v = verdict_values()
    assert aggregate.higher_is_better("heldout_ppl") is False and aggregate.higher_is_better("accuracy") is True
    cmp = verdicts.compare(v, [claim("better", "better", ("pretraining",)), claim("better", "worse", ("pretraining",))])
    better, worse = (r for _, r in cmp.iterrows())
    # ppl differences -10, -9, -11: mean -10, std 1, t2 * 1 / sqrt(3)
    assert better["task"] == "pretraining" and better["metric"] == "heldout_ppl" and better["paired"]
    assert better["diff"] == pytest.approx(-10.0) and better["expected"] == -1
    assert (better["ci_low"], better["ci_high"]) == pytest.approx((-10 - T2 / math.sqrt(3), -10 + T2 / math.sqrt(3)), abs=1e-5)
    assert better["verdict"] == verdicts.AGREES and worse["verdict"] == verdicts.DISAGREES
    # a claim without `tasks` is about downstream tasks only, never perplexity
    assert set(verdicts.compare(v, [claim("better", ">")])["task"]) == {"sst2"}


def test_unpaired_welch_against_random_init():
    cmp = verdicts.compare(verdict_values(), [Claim(RANDOM_INIT, "base", "worse")])
    r = cmp.iloc[0]
    assert not r["paired"] and r["n"] == 3
    va, vb = 0.0004 / 3, (0.0020 / 3) / 4  # var/n of each arm
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 3)  # Welch-Satterthwaite by hand: about 4.96
    from scipy.stats import t

    half = t.ppf(0.975, df) * math.sqrt(va + vb) * 100
    assert r["diff"] == pytest.approx(-11.0)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((-11.0 - half, -11.0 + half), abs=1e-6)
    assert r["verdict"] == verdicts.AGREES


def test_verdict_rules_and_seeds_needed():
    V = verdicts.verdict
    assert V(0.1, 0.5, 1) == V(-0.5, -0.1, -1) == verdicts.AGREES
    assert V(-0.5, -0.1, 1) == V(0.1, 0.5, -1) == V(0.1, 0.5, 0) == verdicts.DISAGREES
    assert V(-0.1, 0.5, 1) == V(-0.1, 0.5, 0) == V(math.nan, math.nan, 1) == verdicts.INCONCLUSIVE
    assert V(0.1, 0.5, None) == verdicts.NO_CLAIM
    assert verdicts.expected_sign("better", False) == -1 and verdicts.expected_sign("worse", False) == 1
    assert verdicts.expected_sign(">=", None) == 1 and verdicts.expected_sign("better", None) is None
    # 80% power for an effect of one SD: n = 10 (G*Power and R's power.t.test(d=1, type="paired") give 9.94)
    assert verdicts.seeds_needed(1.0, 1.0) == verdicts.seeds_needed(1.0, -1.0) == 10
    assert verdicts.seeds_needed(0.0, 0.5) == 2
    assert verdicts.seeds_needed(math.nan, 1.0) is None and verdicts.seeds_needed(1.0, None) is None
    assert verdicts.seeds_needed(1.0, 0.0) is None and verdicts.seeds_needed(100.0, 0.01, max_n=50) is None


def test_paper_values_beside_ours():
    s = aggregate.summarize(make_results().scores)
    anchor = study_anchor("masking", "table1")
    paper = {(v, "sst2"): paper_value(anchor, v, "sst2", "accuracy") for v in ("static", "dynamic")}
    t = aggregate.paper_style_table(s, "accuracy", ["static", "dynamic"], paper)
    assert list(t.columns) == ["sst2", "sst2 (paper)", "mrpc"]
    assert t.loc["static", "sst2 (paper)"] == "92.5" and t.loc["dynamic", "sst2 (paper)"] == "92.9"
    assert t.loc[RANDOM_INIT, "sst2 (paper)"] == aggregate.MISSING
    assert paper_value(anchor, "static", "mrpc", "accuracy") is None
    assert paper_value(anchor, "static", "squad_v2", "squad_v2_f1") == 78.3
    assert paper_value(anchor, "static", "squad_v2", "f1") is None  # SQuAD is F1 of spans, not binary F1


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_every_study_has_anchors(path):
    spec = load_study(path, "tiny")
    anchor = study_anchor(spec.name, spec.paper_table)
    assert anchor is not None, f"{spec.name} has no entry in anchors/paper.yaml"
    if spec.paper_table:
        assert anchor["table"] == spec.paper_table
    assert set(anchor["rows"]) <= set(spec.variants)
    assert all(c["a"] in spec.variants and c["b"] in spec.variants for c in anchor["comparisons"])
    claims = study_claims(spec.name, spec.paper_table, list(spec.variants), spec.baseline)
    if len(spec.variants) > 1:
        assert [c for c in claims if c.source != "sanity"], "no direction from the paper to check"
    assert all(c.relation in (">", ">=", "<", "<=", "~", "better", "worse") or
               (c.relation is None and "not judged" in c.note) for c in claims)
    assert all(c.a != spec.baseline for c in claims)  # differences read variant - baseline


def test_claims_are_turned_to_read_variant_minus_baseline():
    variants = ["data_25", "data_50", "data_100", "data_100_steps_x2", "data_100_steps_x3"]
    claims = study_claims("data_size", "table4", variants, "data_100")
    more_data = next(c for c in claims if c.source == "table4" and c.a == "data_25")
    assert (more_data.b, more_data.relation) == ("data_100", "<")  # the paper: 160 GB > 16 GB
    assert more_data.paper[("sst2", "accuracy")] == pytest.approx(95.3 - 95.6)
    ppl = next(c for c in claims if c.a == "data_25" and c.tasks == ("pretraining",))
    assert ppl.relation == "worse" and ppl.source == "section 5.3"


def test_exploratory_rows_fill_what_no_claim_covers():
    v = verdict_values()
    cmp = verdicts.compare(v, [claim("better", ">", ("sst2",))], baseline="base")
    rows = {(r.a, r.task, r.verdict) for r in cmp.itertuples()}
    assert ("better", "sst2", verdicts.AGREES) in rows and ("better", "pretraining", verdicts.NO_CLAIM) in rows
    assert ("noisy", "sst2", verdicts.NO_CLAIM) in rows and (RANDOM_INIT, "sst2", verdicts.NO_CLAIM) in rows
    assert len(cmp) == len(set(zip(cmp["a"], cmp["task"], cmp["metric"])))  # nothing twice
    other = v[v["variant"] == RANDOM_INIT].assign(variant=f"{RANDOM_INIT}:noisy")  # another vocabulary's control
    cmp = verdicts.compare(pd.concat([v, other], ignore_index=True), [claim("better", ">", ("sst2",))], baseline="base")
    assert f"{RANDOM_INIT}:noisy" not in set(cmp["a"])  # never set against the baseline: only against its variant


def test_heldout_rows_compare_like_for_like_or_say_why_not():
    v = verdict_values()
    bpc = v[(v["task"] == "pretraining")].assign(metric="heldout_bpc")
    bpc["value"] = [3.0, 3.1, 3.2, 2.0, 2.2, 2.1]  # "better" a bit per character below "base" (-1, -0.9, -1.1)
    v = pd.concat([v, bpc], ignore_index=True)
    same, other_tokenizer, other_format = ("t", "u"), ("t", "w"), ("f", "u")

    def row(heldout):
        cmp = verdicts.compare(v, [claim("better", "better", ("pretraining",))], heldout=heldout)
        assert len(cmp) == 1
        return cmp.iloc[0]

    r = row({"base": same, "better": same})
    assert (r.metric, r.caveat) == ("heldout_ppl", "") and r.verdict == verdicts.AGREES  # diffs -10, -9, -11
    r = row({"base": same, "better": other_tokenizer})
    assert (r.metric, r.caveat) == ("heldout_bpc", verdicts.OTHER_UNITS)
    assert r["diff"] == pytest.approx(-1.0) and r.verdict == verdicts.AGREES
    r = row({"base": same, "better": other_format})
    assert (r.metric, r.caveat) == ("heldout_ppl", verdicts.OWN_BLOCKS)
    assert "not like for like" in verdict_frame(pd.DataFrame([r]))["metric"].iloc[0]
    assert row(None).metric == "heldout_ppl"
    # both arms also scored on the shared FULL-SENTENCES blocks: that comparison is like for like, on its values
    shared = v[(v["task"] == "pretraining") & (v["metric"] == "heldout_ppl")].assign(metric="shared_heldout_ppl")
    shared["value"] = [50.0, 51.0, 52.0, 55.0, 56.0, 57.0]  # "better" 5 above "base": worse on the shared blocks
    v = pd.concat([v, shared], ignore_index=True)
    r = row({"base": same, "better": other_format})
    assert (r.metric, r.caveat) == ("shared_heldout_ppl", "") and r["diff"] == pytest.approx(5.0)
    assert r.verdict == verdicts.DISAGREES
    v = v[~((v["metric"] == "shared_heldout_ppl") & (v["variant"] == "base"))]  # one arm without it: own blocks
    assert (row({"base": same, "better": other_format}).metric) == "heldout_ppl"


def test_heldout_identity_separates_blocks_from_units():
    base = Config()
    with_data = lambda **kw: base.model_copy(update={"data": base.data.model_copy(update=kw)})  # noqa: E731
    text, units = heldout_identity(base)
    assert heldout_identity(with_data(data_fraction=0.25)) == (text, units)  # less training text, same held-out
    # a budget in tokens covers other text under another tokenizer or vocabulary: both hashes move
    wp_text, wp_units = heldout_identity(with_data(tokenizer="wordpiece"))
    assert wp_units != units and wp_text != text
    assert heldout_identity(with_data(vocab_size=4096))[0] != text
    # by characters, the text is the same for every tokenizer: only the units move
    chars = heldout_identity(with_data(heldout_chars=50_000))
    assert heldout_identity(with_data(heldout_chars=50_000, tokenizer="wordpiece", vocab_size=4096))[0] == chars[0]
    assert heldout_identity(with_data(format="segment_pair"))[0] != text
    assert heldout_identity(with_data(format="segment_pair"))[1] == units


# ---------------------------------------------------------------- `ablate report` on a fake tiny store


def fake_store(root: Path) -> Store:
    """Every shipped study at tiny scale, its cells finished with made-up metrics (and one failure)."""
    store = Store(root)
    rng = np.random.default_rng(0)
    for path in STUDIES:
        spec = load_study(path, "tiny")
        folder = store.study_dir(spec.name)
        folder.mkdir(parents=True)
        (folder / "study.yaml").write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
        atomic_write_json(folder / "last_run.json", {"scale": "tiny", "study_file": str(path)})
        plan = expand(spec)
        labels = {"git_commit": "0123abc", "python": "3.11", "torch": "2.13.0", "cpu_count": 2, "cuda": None}
        for cell in plan.pretrain:
            run = store.pretrain(spec.name, cell.key)
            run.begin({"seed": cell.seed}, labels)
            ppl = float(rng.uniform(200, 400))
            run.finish({"heldout_ppl": ppl, "heldout_loss": math.log(ppl), "unigram_ppl": 900.0, "steps": 50,
                        "tokens_seen": 100_000, "tokens_per_step": 2000, "flops": 2e12, "wall_s": 30.0,
                        "tokens_per_s": 3333.0, "final_train_loss": 6.0, "wall_total_s": 31.0})
            with open(run.path / "loss.jsonl", "w", encoding="utf-8") as f:
                f.writelines(json.dumps({"step": s, "loss": 9 - s / 20 + rng.normal(0, 0.1), "lr": 1e-3}) + "\n"
                             for s in range(0, 51, 5))
        for i, cell in enumerate(plan.finetune):
            run = store.finetune(spec.name, cell.key)
            run.begin({"seed": cell.seed}, labels)
            if i == 1:
                run.fail("RuntimeError: out of <memory>", "error")
                continue
            base = 0.6 if cell.variant == RANDOM_INIT else 0.8
            run.finish({"metrics": {m: float(base + rng.normal(0, 0.02)) for m in TASKS.get(cell.task).metrics},
                        "wall_s": 5.0})
    return store


def test_build_reports_on_every_study(tmp_path):
    from ablate.report.build import build_reports

    written = build_reports(fake_store(tmp_path / "results"), tmp_path / "reports")
    names = [p.stem for p in STUDIES]
    assert len(written) == len(names) + 7  # a page per study, the index, verdicts.{csv,md,tex}, compute.{csv,md,tex}
    every = pd.read_csv(tmp_path / "reports" / "verdicts.csv")
    assert set(every["study"]) == set(names)
    assert "sentence_pair < segment_pair" in set(every.loc[every["study"] == "input_format", "claim"])
    assert (tmp_path / "reports" / "verdicts.md").read_text(encoding="utf-8").startswith("| study |")
    index = (tmp_path / "reports" / "index.html").read_text(encoding="utf-8")
    for name in names:
        assert f'href="{name}/index.html"' in index
        html = (tmp_path / "reports" / name / "index.html").read_text(encoding="utf-8")
        for text in ("Verdicts", "95% interval", "inconclusive", "arXiv:1907.11692", "0123abc",
                     "out of &lt;memory&gt;", "report libraries.scipy", "finetune", "random-init worse than"):
            assert text in html, (name, text)
        assert ("acc. (paper)" in html) == (study_anchor(name, None)["table"] is not None), name
        assert html.count("<svg") >= 5, name
    page = (tmp_path / "reports" / "input_format" / "index.html").read_text(encoding="utf-8")
    assert "92.9" in page and "<th>sentence_pair &lt; segment_pair</th><td>paper, table2</td>" in page
    # tasks fine-tuned on part of their validation split are marked, with a note saying how
    suite = (tmp_path / "reports" / "finetune_suite" / "index.html").read_text(encoding="utf-8")
    assert "mnli† acc." in suite and "squad_v2†" in suite and "sst2† " not in suite
    assert "not comparable with scores on the full validation_matched split" in suite
    assert "mnli† acc." not in page  # studies that do not split validation show no mark


def test_report_import_stays_light():
    code = "import sys, ablate.report; bad = {'torch', 'transformers'} & set(sys.modules); assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_reports_are_reproducible_from_the_results(tmp_path):
    """`ablate report` on the committed results must give the committed reports: same bytes, every file."""
    from ablate.report.build import build_reports

    store = fake_store(tmp_path / "results")
    build_reports(store, tmp_path / "a")
    build_reports(store, tmp_path / "b")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) > 20
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    differ = [str(f) for f in files if (tmp_path / "a" / f).read_bytes() != (tmp_path / "b" / f).read_bytes()]
    assert not differ, differ


def test_compute_table_counts_each_computation_once(tmp_path):
    """reports/compute.*: cells copied in from another study are listed but not summed again; a resumed
    pretraining counts all its attempts (wall_s), not just the last (wall_total_s)."""
    from ablate.report.build import build_reports, compute_frame

    store = fake_store(tmp_path / "results")
    pre = sorted((store.study_dir("input_format") / "pretrain").glob("*/spec.json"))
    spec = json.loads(pre[0].read_text())
    spec["labels"]["copied_from"] = "masking"
    pre[0].write_text(json.dumps(spec))
    resumed = sorted((store.study_dir("masking") / "pretrain").glob("*/metrics.json"))[0]
    m = RunDir(resumed.parent).metrics()
    m.update(wall_s=3600.0, wall_total_s=600.0)  # the last attempt alone took 600 s
    RunDir(resumed.parent).finish(m)
    df = compute_frame(store, store.studies()).reset_index()

    def at(study, stage):
        return df[(df["study"] == study) & (df["stage"] == stage)].iloc[0]

    n_masking = len(list((store.study_dir("masking") / "pretrain").glob("*/metrics.json")))
    assert at("masking", "pretrain")["cells run"] == n_masking
    assert at("masking", "pretrain")["cell hours"] == round((3600 + 31 * (n_masking - 1)) / 3600, 2)
    n_fmt = len(pre)
    assert (at("input_format", "pretrain")["cells run"], at("input_format", "pretrain")["cells copied"]) == (n_fmt - 1, 1)
    assert at("input_format", "pretrain")["FLOPs (est.)"] == f"{2e12 * (n_fmt - 1):.3g}"
    total = df[df["study"] == "all"].iloc[0]
    assert total["cells copied"] == 1 and total["cells run"] == int(df.loc[df["study"] != "all", "cells run"].sum())
    build_reports(store, tmp_path / "reports")
    assert (tmp_path / "reports" / "compute.md").read_text(encoding="utf-8").startswith("| study |")


# ---------------------------------------------------------------- the pretraining seed as the unit


def test_the_unit_is_the_pretraining_seed():
    """3 checkpoints x 3 fine-tunes per arm: the interval runs over the 3 checkpoint means (df 2), not 9 runs."""
    rng = np.random.default_rng(1)
    rows = []
    for v, shift in (("base", 0.0), ("better", 0.02)):
        for s in range(3):
            ckpt = 0.8 + shift + rng.normal(0, 0.01)
            rows += [{"variant": v, "pretrain_seed": s, "finetune_seed": f, "task": "sst2", "metric": "accuracy",
                      "value": ckpt + rng.normal(0, 0.005)} for f in range(3)]
    scores = pd.DataFrame(rows, columns=SCORE_COLUMNS[:-1])
    v = aggregate.values_long(scores, pd.DataFrame(columns=["variant", "seed"]))
    r = verdicts.compare(v, [claim("better", ">", ("sst2",))]).iloc[0]
    means = scores.groupby(["variant", "pretrain_seed"])["value"].mean()
    d = (means["better"] - means["base"]).to_numpy() * 100
    half = T2 * d.std(ddof=1) / math.sqrt(3)
    assert r["n"] == 3 and r["paired"] and r["df"] == 2
    assert (r["diff"], r["ci_low"], r["ci_high"]) == pytest.approx((d.mean(), d.mean() - half, d.mean() + half))
    within = scores.groupby(["variant", "pretrain_seed"])["value"].var(ddof=1).mean()  # equal group sizes
    assert r["finetune_sd"] == pytest.approx(100 * math.sqrt(within))


def _coverage(rho: float, studies: int, rng: np.random.Generator) -> float:
    """Share of simulated 3x3 studies whose seed-level 95% interval covers the true difference (1), with fine-tunes
    of one checkpoint correlated rho (a checkpoint effect of variance rho, run noise 1 - rho). Numpy only: each arm's
    checkpoint means, paired by seed, through the interval `difference` uses."""
    def arm(true: float) -> np.ndarray:  # [studies, 3 checkpoints, 3 fine-tunes] -> checkpoint means
        ckpt = rng.normal(0, math.sqrt(rho), (studies, 3, 1))
        return (true + ckpt + rng.normal(0, math.sqrt(1 - rho), (studies, 3, 3))).mean(-1)

    _, _, low, high = verdicts.paired_interval(arm(1.0) - arm(0.0))
    return float(((low <= 1.0) & (1.0 <= high)).mean())


def _naive_coverage(rho: float, studies: int, rng: np.random.Generator) -> float:
    """The first edition's interval: 9 (seed, fine-tune) pairs as if independent."""
    ckpt_a, ckpt_b = (rng.normal(0, math.sqrt(rho), (studies, 3, 1)) for _ in range(2))
    a = 1.0 + ckpt_a + rng.normal(0, math.sqrt(1 - rho), (studies, 3, 3))
    b = ckpt_b + rng.normal(0, math.sqrt(1 - rho), (studies, 3, 3))
    _, _, low, high = verdicts.paired_interval((a - b).reshape(studies, 9))
    return float(((low <= 1.0) & (1.0 <= high)).mean())


@pytest.mark.parametrize("rho", [0.0, 0.4, 0.8])
def test_seed_level_interval_covers_95_percent(rho):
    assert 0.93 <= _coverage(rho, 4000, np.random.default_rng(int(rho * 10))) <= 0.97


def test_run_level_interval_undercovers_when_runs_share_a_checkpoint():
    """Why the unit changed: counting 9 runs as independent covers far less than 95% at a correlation of 0.8."""
    assert _naive_coverage(0.8, 4000, np.random.default_rng(3)) < 0.85


def test_seeds_needed_gives_80_percent_power_by_simulation():
    from scipy.stats import t as student

    rng = np.random.default_rng(0)
    n = verdicts.seeds_needed(1.0, 1.0)

    def power(k: int, sims: int = 4000) -> float:
        d = rng.normal(1.0, 1.0, (sims, k))
        tstat = d.mean(1) / (d.std(1, ddof=1) / math.sqrt(k))
        return float((np.abs(tstat) > student.ppf(0.975, k - 1)).mean())

    assert power(n) >= 0.78 and power(n - 1) < 0.80


@pytest.mark.parametrize("kind,expected,margin,interval,want", [
    ("better", 1, 0, (0.1, 0.5), "agrees"), ("better", 1, 0, (-0.5, -0.1), "disagrees"),
    ("better", 1, 0, (0.0, 0.5), "inconclusive"), ("better", -1, 0, (-0.5, -0.1), "agrees"),
    ("noninferior", 1, 1.0, (-0.9, 2.0), "agrees"), ("noninferior", 1, 1.0, (-1.0, 2.0), "inconclusive"),
    ("noninferior", 1, 1.0, (-3.0, -1.1), "disagrees"), ("noninferior", -1, 1.0, (-2.0, 0.9), "agrees"),
    ("equivalent", 0, 1.0, (-0.9, 0.9), "agrees"), ("equivalent", 0, 1.0, (-1.0, 0.5), "inconclusive"),
    ("equivalent", 0, 1.0, (1.1, 2.0), "disagrees"), ("equivalent", 0, 1.0, (-2.0, -1.01), "disagrees"),
])
def test_each_claim_kind_at_its_boundaries(kind, expected, margin, interval, want):
    assert verdicts.verdict(*interval, expected, kind, margin) == want


@pytest.mark.parametrize("kind,expected,margin", [("better", 1, 0.0), ("noninferior", 1, 1.0), ("noninferior", -1, 1.0),
                                                  ("equivalent", 0, 1.0)])
def test_p_value_agrees_with_the_interval(kind, expected, margin):
    """p < 0.05 exactly when the 95% interval gives a verdict (agrees or disagrees)."""
    from scipy.stats import t as student

    rng = np.random.default_rng(2)
    for _ in range(300):
        diff, se, df = rng.normal(0, 2), rng.uniform(0.1, 2), 2.0
        half = student.ppf(0.975, df) * se
        v = verdicts.verdict(diff - half, diff + half, expected, kind, margin)
        p = verdicts.p_value(diff, se, df, expected, kind, margin)
        assert (p < 0.05) == (v != "inconclusive"), (diff, se, v, p)


def test_holm_and_benjamini_hochberg_on_known_examples():
    p = [0.01, 0.04, 0.03, 0.005, math.nan]
    # Holm: sorted 0.005 0.01 0.03 0.04 -> x4 x3 x2 x1 = 0.02 0.03 0.06 0.04 -> running max 0.02 0.03 0.06 0.06
    assert verdicts.holm(p)[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02]) and math.isnan(verdicts.holm(p)[4])
    # BH: sorted p x 4 / rank = 0.02 0.02 0.04 0.04 -> running min from the top: 0.02 0.02 0.04 0.04
    assert verdicts.benjamini_hochberg(p)[:4] == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert verdicts.adjusted(["agrees", "disagrees", "inconclusive"], [0.04, 0.06, 0.01]) == \
        ["agrees", "inconclusive", "inconclusive"]


def test_adjusted_verdicts_in_compare():
    v = verdict_values()
    cmp = verdicts.compare(v, [claim("better", ">", ("sst2",)), claim("noisy", ">", ("sst2",)),
                               Claim(RANDOM_INIT, "base", "worse", source="sanity")])
    assert list(cmp["p_holm"].iloc[:2]) == pytest.approx(list(verdicts.holm(cmp["p"].iloc[:2])))
    assert cmp["p_holm"].iloc[2] == pytest.approx(cmp["p"].iloc[2])  # random init: a family of its own
    counts = verdicts.verdict_counts(cmp)
    assert counts["paper"] == {"agrees": 1, "disagrees": 0, "inconclusive": 1}
