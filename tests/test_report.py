"""Aggregation, anchors, plots and the HTML report on a synthetic StudyResults with hand-computed numbers."""

from __future__ import annotations

import math
import subprocess
import sys

import pandas as pd
import pytest

from ablate import aggregate, plots
from ablate.anchors import load_anchors, paper_table
from ablate.expand import RANDOM_INIT
from ablate.report import write_index, write_study_report
from ablate.results import CURVE_COLUMNS, PRETRAIN_COLUMNS, SCORE_COLUMNS, StudyResults
from ablate.spec import Config, RuntimeSpec, Seeds, StudySpec

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
    assert row(s, variant="dynamic", task="sst2", metric="accuracy")["median"] == pytest.approx(0.865)
    single = row(s, variant="static", task="mrpc", metric="f1")
    assert single["n"] == 1 and single["median"] == pytest.approx(0.75) and math.isnan(single["std"])
    assert aggregate.summarize(empty_results().scores).empty


def test_margin_is_median_minus_random_init_in_points():
    m = aggregate.pretraining_margin(aggregate.summarize(make_results().scores))
    assert set(m["variant"]) == {"static", "dynamic"} and set(m["task"]) == {"sst2"}  # mrpc has no control
    assert row(m, variant="static")["margin"] == pytest.approx(83.0 - 72.0)
    assert row(m, variant="dynamic")["margin"] == pytest.approx(86.5 - 72.0)
    assert row(m, variant="dynamic")["random_init_median"] == pytest.approx(72.0)
    assert aggregate.pretraining_margin(aggregate.summarize(empty_results().scores)).empty


def test_paper_style_table_order_and_format():
    s = aggregate.summarize(make_results().scores)
    t = aggregate.paper_style_table(s, "accuracy", ["static", "dynamic"])
    assert list(t.index) == ["static", "dynamic", RANDOM_INIT]
    assert list(t.columns) == ["sst2", "mrpc"]
    assert t.loc["static", "sst2"] == f"83.0 (84.0 ± {100 * math.sqrt(0.0056 / 3):.1f}, n=4)"
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


def test_study_report_html(tmp_path):
    study = make_study(description="Masking <script>alert('x')</script> & friends")
    path = write_study_report(study, make_results(), tmp_path, {"git": {"commit": "abc123"}, "torch": "2.13.0"})
    assert path == tmp_path / "masking" / "index.html"
    html = path.read_text(encoding="utf-8")
    for text in ("static", "dynamic", RANDOM_INIT, "78.7", "92.9", "84.3", "arXiv:1907.11692",
                 "+11.0 (83.0 vs 72.0)", "+14.5 (86.5 vs 72.0)", "83.0 (84.0 ±", "git.commit", "abc123",
                 "held-out MLM ppl", "130.0 (130.0 ± 14.1)", "200,000 (200,000 ± 0)", "dynamic/pt0/mrpc/ft1", "loss is NaN &lt;boom&gt;"):
        assert text in html, text
    assert "<script" not in html
    assert "&lt;script&gt;alert(" in html
    assert html.count("<svg") >= 4  # sst2 accuracy, mrpc accuracy, mrpc f1, loss curves
    assert "http://cdn" not in html and "<link" not in html
    assert "static: {}" in html  # the study source, escaped into a <pre>
    summary = pd.read_csv(path.parent / "summary.csv")
    assert row(summary, variant="static", task="sst2", metric="accuracy")["median"] == pytest.approx(0.83)
    assert len(pd.read_csv(path.parent / "scores.csv")) == sum(len(v) for v in SCORES.values())


def test_zero_results_report_and_index(tmp_path):
    path = write_study_report(make_study(paper=None), empty_results(), tmp_path, {})
    html = path.read_text(encoding="utf-8")
    assert "No results yet" in html and "20 of 20 cells are pending" in html
    assert "Pretraining margin over random init" in html  # the section is always there
    unknown = write_study_report(make_study(paper="table9"), empty_results(), tmp_path / "u", {})
    assert "not in the anchors" in unknown.read_text(encoding="utf-8")
    idx = write_index([{"name": "masking", "description": "a <b>study</b>", "scale": "tiny",
                        "counts": {"done": 3, "failed": 1, "pending": 2}}], tmp_path)
    text = idx.read_text(encoding="utf-8")
    assert 'href="masking/index.html"' in text and "a &lt;b&gt;study&lt;/b&gt;" in text
    assert ">3<" in text and ">2<" in text


def test_report_import_stays_light():
    code = "import sys, ablate.report; bad = {'torch', 'transformers'} & set(sys.modules); assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True)
