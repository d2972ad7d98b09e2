"""Tidy result tables and aggregates -> matplotlib Figures. Pure: nothing is saved or shown here.

- task_scores: one task's scores, every (pretrain_seed, finetune_seed) run a point per variant, the median a bar,
  the mean with its 95% interval (from analysis.aggregate.summarize) beside.
- forest: paired differences vs the baseline (analysis.verdicts.compare) with their intervals, the paper's difference marked.
- loss_curves: pretraining loss vs step, one line per (variant, seed), one colour per variant.
- metric_vs_compute: held-out perplexity and each task's median score against pretraining FLOPs.
Figures are built with `matplotlib.figure.Figure`, not pyplot, so nothing piles up in pyplot's
global figure list when a report draws many of them.
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence

import matplotlib

if "matplotlib.pyplot" not in sys.modules:  # seaborn imports pyplot; never switch a backend someone already chose
    matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

from ablate.analysis.aggregate import primary_columns, scale_of, variant_rows  # noqa: E402
from ablate.analysis.anchors import RELATION_TEXT, SANITY  # noqa: E402
from ablate.analysis.verdicts import AGREES, DISAGREES, INCONCLUSIVE, NO_CLAIM  # noqa: E402
from ablate.metrics import METRICS  # noqa: E402
from ablate.study.cells import is_control  # noqa: E402

WIDTH, HEIGHT = 6.4, 3.6  # inches: fits a laptop screen at 100 dpi


def _empty(title: str, message: str = "no data") -> Figure:
    fig = Figure(figsize=(WIDTH, HEIGHT * 0.6))
    ax = fig.add_subplot()
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=12, color="0.4", transform=ax.transAxes)
    ax.set_title(title)
    ax.set_axis_off()
    return fig


def _palette(variants: Sequence[str]) -> dict[str, tuple]:
    colours = sns.color_palette("tab10", n_colors=max(len(variants), 1))
    return {v: colours[i % len(colours)] for i, v in enumerate(variants)}


VERDICT_COLOURS = {AGREES: "#1a7f37", DISAGREES: "#c0392b", INCONCLUSIVE: "#7f7f7f", NO_CLAIM: "#b0b0b0"}


def _label(metric: str) -> str:
    return METRICS.get(metric).display if metric in METRICS else metric


def task_scores(scores: pd.DataFrame, task: str, metric: str, order: Optional[Sequence[str]] = None,
                summary: Optional[pd.DataFrame] = None) -> Figure:
    """Strip plot of every run's score on `task` per variant (points, x100 for percent metrics) and its median;
    with `summary` (aggregate.summarize), the mean and its 95% interval as an error bar right of the points."""
    label = _label(metric)
    title = f"{task}: {label}"
    scale = scale_of(metric)
    sub = scores[(scores["task"] == task) & (scores["metric"] == metric)]
    sub = sub.assign(score=pd.to_numeric(sub["value"], errors="coerce") * scale,
                     variant=sub["variant"].astype(str)).dropna(subset=["score"])
    if sub.empty:
        return _empty(title)
    present = list(dict.fromkeys(sub["variant"]))
    order = [v for v in variant_rows(order or [], present) if v in present]
    fig = Figure(figsize=(WIDTH, HEIGHT), layout="constrained")
    ax = fig.add_subplot()
    # a strip plot with our own seeded jitter (seaborn's draws from numpy's global state): same data, same bytes
    colors, rng = _palette(order), np.random.default_rng(0)
    for i, v in enumerate(order):
        ys = sub.loc[sub["variant"] == v, "score"].to_numpy()
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(ys)), ys, s=36, color=colors[v], alpha=0.8,
                   edgecolors="none", zorder=3)
    ax.set_xlim(-0.5, len(order) - 0.5)
    ax.set_xticks(range(len(order)), order)
    medians = sub.groupby("variant")["score"].median()
    ax.scatter(range(len(order)), [medians[v] for v in order], marker="_", s=900, linewidths=2.5,
               color="black", zorder=5, label="median")
    if summary is not None:
        _mean_intervals(ax, summary, task, metric, order, scale)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize=8)  # outside: never over a point
    _variant_ticks(ax, order)
    ax.set_xlabel("")
    ax.set_ylabel(f"{label}" + (" (points)" if scale != 1 else ""))
    ax.set_title(f"{title} (each point one fine-tuning run)")
    ax.grid(axis="y", alpha=0.3)
    return fig


def _variant_ticks(ax, order: Sequence[str]) -> None:
    """Slant the variant names when they would run into each other (about 60 characters fit across the axes)."""
    if order and max(len(v) for v in order) > 60 / len(order):
        ax.tick_params(axis="x", labelrotation=25)
        for t in ax.get_xticklabels():
            t.set_horizontalalignment("right")


def _mean_intervals(ax, summary: pd.DataFrame, task: str, metric: str, order: Sequence[str], scale: float) -> None:
    sub = summary[(summary["task"] == task) & (summary["metric"] == metric)].set_index("variant")
    labelled = False  # one legend entry, on the first variant that has an interval
    for i, v in enumerate(order):
        if v not in sub.index or pd.isna(sub.loc[v, "ci_low"]):
            continue
        r = sub.loc[v]
        ax.errorbar([i + 0.3], [r["mean"] * scale],
                    yerr=[[(r["mean"] - r["ci_low"]) * scale], [(r["ci_high"] - r["mean"]) * scale]],
                    fmt="o", color="0.25", markersize=4, capsize=3, zorder=6,
                    label=None if labelled else "mean, 95% interval")
        labelled = True


def forest(comparisons: pd.DataFrame, unit: str = "points") -> Figure:
    """One row per comparison (aggregate.compare rows in one unit): a - b with its 95% interval, coloured by
    verdict, and the paper's a - b as an open diamond where it is in the same unit."""
    title = f"differences a - b ({unit})"
    if comparisons.empty:
        return _empty(title)
    cmp = comparisons.reset_index(drop=True)
    # constrained layout keeps long tick labels and the outside legend on the canvas (tight_layout clips them)
    fig = Figure(figsize=(WIDTH + 1.6, 1.3 + 0.42 * len(cmp)), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(cmp))[::-1]  # first comparison at the top
    for yi, r in zip(y, cmp.itertuples(index=False)):
        colour = VERDICT_COLOURS.get(r.verdict, "0.5")
        if not pd.isna(r.ci_low):
            ax.plot([r.ci_low, r.ci_high], [yi, yi], color=colour, linewidth=2.2)
        ax.plot([r.diff], [yi], "o", color=colour, markersize=6)
        if unit == "points" and not pd.isna(r.paper_diff):
            ax.plot([r.paper_diff], [yi], "D", markerfacecolor="none", markeredgecolor="black", markersize=7)
    ax.axvline(0, color="black", linewidth=0.8)
    labels = [f"{r.a} vs {r.b}: {r.task} {_label(r.metric)}"
              + (f"  ({'expected' if r.source == SANITY else 'paper'}: {RELATION_TEXT.get(r.relation, r.relation)})"
                 if isinstance(r.relation, str) else "")
              for r in cmp.itertuples(index=False)]
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_ylim(-0.7, len(cmp) - 0.3)
    ax.set_xlabel(f"a - b ({unit}); bar: 95% interval over seeds")
    handles = [Line2D([], [], color=c, marker="o", linewidth=2, label=v) for v, c in VERDICT_COLOURS.items()
               if v in set(cmp["verdict"])]
    if unit == "points" and cmp["paper_diff"].notna().any():
        handles.append(Line2D([], [], linestyle="none", marker="D", markerfacecolor="none",
                              markeredgecolor="black", label="paper"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize=8)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return fig


def loss_curves(curves: pd.DataFrame, order: Optional[Sequence[str]] = None) -> Figure:
    """Pretraining loss vs step: one line per (variant, seed), coloured by variant."""
    title = "pretraining loss"
    if curves.empty or curves["loss"].isna().all():
        return _empty(title)
    present = list(dict.fromkeys(curves["variant"].astype(str)))
    order = [v for v in variant_rows(order or [], present) if v in present]
    colours = _palette(order)
    fig = Figure(figsize=(WIDTH, HEIGHT))
    ax = fig.add_subplot()
    for variant in order:
        runs = curves[curves["variant"].astype(str) == variant]
        for i, (seed, run) in enumerate(runs.groupby("seed", sort=True)):
            run = run.sort_values("step")
            ax.plot(run["step"], run["loss"], color=colours[variant], alpha=0.85, linewidth=1.2,
                    label=variant if i == 0 else None)  # one legend entry per variant, not per seed
    ax.set_xlabel("step")
    ax.set_ylabel("MLM training loss")
    ax.set_title(f"{title} (one line per variant and seed)")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def blimp_heatmap(blimp: pd.DataFrame, order: Optional[Sequence[str]] = None) -> Figure:
    """BLiMP accuracy (points) per phenomenon and model (variants, random init), mean over the scored models;
    the colour scale is centred on chance (50)."""
    title = "BLiMP accuracy by phenomenon"
    if blimp.empty:
        return _empty(title)
    present = list(dict.fromkeys(blimp["variant"].astype(str)))
    order = [v for v in variant_rows(order or [], present) if v in present]
    grid = (blimp.assign(accuracy=100 * blimp["accuracy"].astype(float))
            .pivot_table(index="phenomenon", columns="variant", values="accuracy", aggfunc="mean")
            .reindex(columns=order))
    grid = grid.reindex([p for p in grid.index if p != "overall"] + (["overall"] if "overall" in grid.index else []))
    fig = Figure(figsize=(WIDTH, 0.32 * len(grid) + 1.2))
    ax = fig.add_subplot()
    sns.heatmap(grid, ax=ax, cmap="RdBu", center=50.0, vmin=0, vmax=100, annot=True, fmt=".0f", cbar=False,
                annot_kws={"fontsize": 7})
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.set_title(f"{title} (chance 50)")
    fig.tight_layout()
    return fig


def finetune_curves(curves: pd.DataFrame, epochs: pd.DataFrame, columns: Sequence[tuple[str, str]],
                    order: Optional[Sequence[str]] = None) -> Figure:
    """Small multiples, a column per task: top, the fine-tuning loss against the epoch (a line per run, a colour
    per variant); bottom, the task's headline metric on the validation split after every epoch (mean per variant)."""
    title = "fine-tuning"
    tasks = [(t, m) for t, m in columns if t in set(curves["task"])]
    if curves.empty or not tasks:
        return _empty(title)
    present = list(dict.fromkeys(curves["variant"].astype(str)))
    order = [v for v in variant_rows(order or [], present) if v in present]
    colours = _palette(order)
    fig = Figure(figsize=(max(WIDTH, 2.6 * len(tasks)), HEIGHT * 1.4))
    axes = fig.subplots(2, len(tasks), squeeze=False)
    for col, (task, metric) in enumerate(tasks):
        top, bottom = axes[0][col], axes[1][col]
        runs = curves[curves["task"] == task]
        for variant in order:
            for i, (_, run) in enumerate(runs[runs["variant"].astype(str) == variant]
                                         .groupby(["pretrain_seed", "finetune_seed"], dropna=False)):
                top.plot(run["epoch"], run["loss"], color=colours[variant], alpha=0.5, linewidth=0.8,
                         label=variant if i == 0 and col == 0 else None)
            ep = epochs[(epochs["task"] == task) & (epochs["metric"] == metric)
                        & (epochs["variant"].astype(str) == variant)]
            if not ep.empty:
                mean = ep.groupby("epoch")["value"].mean() * scale_of(metric)
                bottom.plot(mean.index, mean.values, marker="o", color=colours[variant], linewidth=1.2)
        top.set_title(task)
        top.set_ylabel("training loss" if col == 0 else "")
        bottom.set_xlabel("epoch")
        bottom.set_ylabel(_label(metric) if col == 0 else "")
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
    if len(order) > 1:
        axes[0][0].legend(frameon=False, fontsize=7)
    fig.suptitle(f"{title}: loss per run (top), validation metric per epoch, mean per variant (bottom)", fontsize=9)
    fig.tight_layout()
    return fig


def metric_vs_compute(pretrain_df: pd.DataFrame, scores: pd.DataFrame,
                      columns: Optional[Sequence[tuple[str, str]]] = None,
                      order: Optional[Sequence[str]] = None) -> Figure:
    """Left: held-out MLM perplexity vs pretraining FLOPs per (variant, seed). Right: each task's median over
    fine-tuning seeds on its metric (`columns`, default aggregate.primary_columns) per (variant, seed), vs the
    same FLOPs; random init as hollow markers in a column left of the pretrained models."""
    title = "metric against compute"
    pre = pretrain_df.assign(flops=pd.to_numeric(pretrain_df["flops"], errors="coerce"))
    pre = pre[pre["flops"] > 0]
    if pre.empty:
        return _empty(title)
    present = list(dict.fromkeys(pre["variant"].astype(str)))
    order = [v for v in variant_rows(order or [], present) if v in present]
    colours = _palette(order)
    fig = Figure(figsize=(WIDTH * 1.6, HEIGHT), layout="constrained")
    left, right = fig.subplots(1, 2)
    for v in order:
        rows = pre[pre["variant"] == v]
        left.scatter(rows["flops"], rows["heldout_ppl"], color=colours[v], label=v, s=30)
    left.set(xscale="log", xlabel="pretraining FLOPs (est.)", ylabel="held-out MLM perplexity", title="perplexity")
    columns = list(columns if columns is not None else primary_columns(scores))
    marks = "osD^vP*Xhp<>"
    markers = {task: marks[i % len(marks)] for i, (task, _) in enumerate(columns)}
    flops = pre.set_index(["variant", "seed"])["flops"]
    x_random = float(pre["flops"].min()) / 4  # random init spent no pretraining compute: a column left of the rest
    has_random = False
    for task, metric in columns:
        sub = scores[(scores["task"] == task) & (scores["metric"] == metric)]
        med = sub.groupby(["variant", "pretrain_seed"], dropna=False)["value"].median() * scale_of(metric)
        for (variant, seed), y in med.items():
            if not is_control(variant) and (variant, seed) in flops.index:
                right.scatter(flops[(variant, seed)], y, color=colours.get(variant, "0.5"), marker=markers[task], s=30)
        controls = sub[sub["variant"].map(is_control).astype(bool)]
        for _, ri in controls.groupby("variant", sort=True)["value"]:  # one mark per vocabulary's control
            has_random = True
            right.scatter(x_random, ri.median() * scale_of(metric), marker=markers[task], s=30,
                          facecolors="none", edgecolors="0.35")
    right.set(xscale="log", xlabel="pretraining FLOPs (est.)", ylabel="median score (points)", title="downstream")
    handles = [Line2D([], [], linestyle="none", marker=markers[t], color="0.3", label=f"{t} {_label(m)}")
               for t, m in columns]
    handles += [Line2D([], [], linestyle="none", marker="o", color=colours[v], label=v) for v in order]
    if has_random:
        handles.append(Line2D([], [], linestyle="none", marker="o", markerfacecolor="none", markeredgecolor="0.35",
                              label="random init (no pretraining)"))
        right.set_xlim(x_random / 2.5, float(pre["flops"].max()) * 2.5)
    right.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize=8)
    for ax in (left, right):
        ax.xaxis.set_minor_formatter(NullFormatter())  # "2x10^11" minor labels collide on a short log axis
        ax.grid(alpha=0.3)
    return fig
