"""Tidy result tables -> matplotlib Figures. Pure: nothing is saved or shown here.

- task_scores: one task's scores, every (pretrain_seed, finetune_seed) run a point per variant, the median a bar.
- loss_curves: pretraining loss vs step, one line per (variant, seed), one colour per variant.
Figures are built with `matplotlib.figure.Figure`, not pyplot, so nothing piles up in pyplot's
global figure list when a report draws many of them.
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence

import matplotlib

if "matplotlib.pyplot" not in sys.modules:  # seaborn imports pyplot; never switch a backend someone already chose
    matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ablate.aggregate import scale_of, variant_rows  # noqa: E402
from ablate.metrics import METRICS  # noqa: E402

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


def task_scores(scores: pd.DataFrame, task: str, metric: str, order: Optional[Sequence[str]] = None) -> Figure:
    """Strip plot of every run's score on `task` per variant (points, x100 for percent metrics) and its median."""
    label = METRICS.get(metric).display if metric in METRICS else metric
    title = f"{task}: {label}"
    scale = scale_of(metric)
    sub = scores[(scores["task"] == task) & (scores["metric"] == metric)]
    sub = sub.assign(score=pd.to_numeric(sub["value"], errors="coerce") * scale,
                     variant=sub["variant"].astype(str)).dropna(subset=["score"])
    if sub.empty:
        return _empty(title)
    present = list(dict.fromkeys(sub["variant"]))
    order = [v for v in variant_rows(order or [], present) if v in present]
    fig = Figure(figsize=(WIDTH, HEIGHT))
    ax = fig.add_subplot()
    sns.stripplot(data=sub, x="variant", y="score", hue="variant", order=order, hue_order=order,
                  palette=_palette(order), jitter=0.15, size=6, alpha=0.8, legend=False, ax=ax)
    medians = sub.groupby("variant")["score"].median()
    ax.scatter(range(len(order)), [medians[v] for v in order], marker="_", s=900, linewidths=2.5,
               color="black", zorder=5, label="median")
    ax.legend(loc="best", frameon=False)
    ax.set_xlabel("")
    ax.set_ylabel(f"{label}" + (" (points)" if scale != 1 else ""))
    ax.set_title(f"{title} (each point one fine-tuning run)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
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
