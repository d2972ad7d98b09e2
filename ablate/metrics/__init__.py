"""METRICS: metric name -> record with `higher_is_better`, computed by a plain function of this package.

The functions (ablate.metrics.glue, ablate.metrics.squad) take predictions and references and return a dict;
one function can give several metrics (SQuAD v2 gives exact, f1, HasAns_*, NoAns_*, best_*): a metric names
its function (`module`, after the `evaluate` modules they replace, whose numbers they give) and the key it
reads from the result. Nothing is loaded from the hub.

Values are fractions in [0, 1] (accuracy 0.81, SQuAD EM 0.74) or correlations in [-1, 1]
(MCC, Pearson, Spearman); `percent=True` asks reports to show them x100, as GLUE and SQuAD do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ablate.metrics import blimp, glue, squad
from ablate.registry import Registry

# function name -> predictions, references -> {key: value}
FUNCTIONS: dict[str, Callable[[Sequence[Any], Sequence[Any]], dict[str, Any]]] = {
    "accuracy": glue.accuracy,
    "f1": glue.f1,
    "matthews_correlation": glue.matthews_correlation,
    "pearson": glue.pearson,
    "spearman": glue.spearman,
    "squad": squad.squad,
    "squad_v2": squad.squad_v2,
    "blimp": blimp.pair_accuracy,
}


@dataclass(frozen=True)
class MetricSpec:
    name: str  # registry name, stable: results and reports key on it
    higher_is_better: bool
    display: str  # column title in reports
    percent: bool = True  # shown x100 in tables
    module: str = ""  # the function in FUNCTIONS that computes it; "" = same as name
    key: str = ""  # key of the module's result dict; "" = same as name

    @property
    def module_name(self) -> str:
        return self.module or self.name

    @property
    def result_key(self) -> str:
        return self.key or self.name

    @property
    def function(self) -> Callable[[Sequence[Any], Sequence[Any]], dict[str, Any]]:
        return FUNCTIONS[self.module_name]


METRICS: Registry[MetricSpec] = Registry("metric")


def _register(name: str, display: str, module: str = "", key: str = "", higher_is_better: bool = True) -> None:
    METRICS.register(name, MetricSpec(name, higher_is_better, display, True, module, key))


_register("accuracy", "acc.")
_register("f1", "F1")  # binary F1 of label 1 (MRPC, QQP)
_register("matthews_correlation", "MCC")  # CoLA
_register("pearson", "Pearson")  # STS-B
_register("spearman", "Spearman")  # STS-B
# SQuAD v1.1: the official script's EM and F1 (max over gold answers).
_register("squad_exact_match", "EM", "squad", "exact_match")
_register("squad_f1", "F1", "squad", "f1")
# SQuAD v2.0: the official v2 script. exact/f1 score the predictions as given (empty text = no answer);
# HasAns/NoAns split them by whether the question has an answer (NoAns F1 always equals NoAns EM, so only
# EM is kept); best_* move the no-answer threshold to its best value on the scored set, as the script does.
_register("squad_v2_exact", "EM", "squad_v2", "exact")
_register("squad_v2_f1", "F1", "squad_v2", "f1")
_register("squad_v2_has_ans_exact", "HasAns EM", "squad_v2", "HasAns_exact")
_register("squad_v2_has_ans_f1", "HasAns F1", "squad_v2", "HasAns_f1")
_register("squad_v2_no_ans_exact", "NoAns EM", "squad_v2", "NoAns_exact")
_register("squad_v2_best_exact", "best EM", "squad_v2", "best_exact")
_register("squad_v2_best_f1", "best F1", "squad_v2", "best_f1")
# BLiMP: the share of minimal pairs whose acceptable sentence scores higher (a tie counts half); the unigram
# baseline scores the same pairs by word frequency alone, so "better than frequency" is visible.
_register("blimp_accuracy", "acc.", "blimp", "accuracy")
_register("blimp_unigram_accuracy", "unigram acc.", "blimp", "accuracy")


def compute_module(module_name: str, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
    """Run one metric function; its whole result dict, as floats."""
    result = FUNCTIONS[module_name](list(predictions), list(references))
    return {k: float(v) for k, v in result.items()}


def compute(name: str, predictions: Sequence[Any], references: Sequence[Any]) -> float:
    """Score predictions with the metric `name`."""
    spec = METRICS.get(name)
    return compute_module(spec.module_name, predictions, references)[spec.result_key]


def compute_many(names: Sequence[str], predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
    """Every metric in `names`, running each module once."""
    specs = [METRICS.get(n) for n in names]
    results = {m: compute_module(m, predictions, references) for m in dict.fromkeys(s.module_name for s in specs)}
    return {s.name: results[s.module_name][s.result_key] for s in specs}
