"""StudySpec -> Plan: (variant, seed) pretraining cells, their fine-tuning runs, and the random-init controls: one
for the baseline's vocabulary (RANDOM_INIT) and one for every other vocabulary a study uses (`random-init:<variant>`,
named for the first variant with it), so a variant's margin over random init is against a model of its own vocabulary.

Pure, no I/O. Each cell carries its key (ablate.study.identity): finished cells are found by it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ablate.study.identity import finetune_identity, pretrain_identity, stable_hash, tokenizer_identity
from ablate.study.load import load_study
from ablate.study.spec import SCALES, Config, StudySpec
from ablate.tasks import TASKS

RANDOM_INIT = "random-init"


def is_control(variant: str) -> bool:
    """A random-init control's name: RANDOM_INIT, or `random-init:<variant>` for another vocabulary."""
    return variant == RANDOM_INIT or variant.startswith(RANDOM_INIT + ":")


def controls_of(study: StudySpec) -> dict[str, str]:
    """Variant -> the name of its random-init control. The baseline's vocabulary (tokenizer kind, size, training
    text) has RANDOM_INIT; every other vocabulary `random-init:<v>`, v the first variant in file order using it."""
    def vocabulary(cfg: Config) -> str:
        return stable_hash(tokenizer_identity(cfg))

    names = {vocabulary(study.variants[study.baseline]): RANDOM_INIT}
    out = {}
    for variant, cfg in study.variants.items():
        out[variant] = names.setdefault(vocabulary(cfg), f"{RANDOM_INIT}:{variant}")
    return out


def control_variants(study: StudySpec) -> dict[str, str]:
    """Control name -> the variant whose config it is built from and checked against: the baseline for RANDOM_INIT
    (first), then each other vocabulary's first variant, in file order."""
    out = {RANDOM_INIT: study.baseline}
    for variant, name in controls_of(study).items():
        out.setdefault(name, variant)
    return out


@dataclass(frozen=True)
class PretrainCell:
    variant: str
    seed: int
    config: Config
    key: str

    @property
    def label(self) -> str:
        return f"{self.variant}/seed{self.seed}"


@dataclass(frozen=True)
class FinetuneCell:
    variant: str  # a control's name for the random-init controls (is_control)
    pretrain_seed: Optional[int]
    task: str
    seed: int
    config: Config
    key: str
    pretrain_key: Optional[str]

    @property
    def label(self) -> str:
        ps = "" if self.pretrain_seed is None else f"/pt{self.pretrain_seed}"
        return f"{self.variant}{ps}/{self.task}/ft{self.seed}"


@dataclass(frozen=True)
class Plan:
    study: StudySpec
    pretrain: list[PretrainCell] = field(default_factory=list)
    finetune: list[FinetuneCell] = field(default_factory=list)

    def finetunes_of(self, pretrain_key: Optional[str]) -> list[FinetuneCell]:
        return [c for c in self.finetune if c.pretrain_key == pretrain_key]


def _seeds(study: StudySpec, task: str, pretrained: bool) -> tuple[int, ...]:
    """Fine-tuning seeds of a task's runs: every one, except a zero-shot task on a checkpoint, which nothing
    randomises (scored once, with the first seed); random init is a new model per seed, so it keeps them all."""
    if pretrained and TASKS.get(task).kind == "zero-shot":
        return study.seeds.finetune[:1]
    return study.seeds.finetune


def expand(study: StudySpec) -> Plan:
    """Every pretraining cell (variant x seed) and its fine-tuning runs, plus a random-init control per vocabulary."""
    plan = Plan(study)
    for variant, cfg in study.variants.items():
        for seed in study.seeds.pretrain:
            key = stable_hash(pretrain_identity(cfg, seed))
            plan.pretrain.append(PretrainCell(variant, seed, cfg, key))
            for task in cfg.finetune.tasks:
                for ft_seed in _seeds(study, task, pretrained=True):
                    fkey = stable_hash(finetune_identity(cfg, key, task, ft_seed))
                    plan.finetune.append(FinetuneCell(variant, seed, task, ft_seed, cfg, fkey, key))
    base = study.variants[study.baseline]
    if base.finetune.random_init_control:
        for name, variant in control_variants(study).items():  # the baseline's first: its keys as before
            cfg = study.variants[variant]
            for task in cfg.finetune.tasks:
                for ft_seed in study.seeds.finetune:
                    fkey = stable_hash(finetune_identity(cfg, None, task, ft_seed))
                    plan.finetune.append(FinetuneCell(name, None, task, ft_seed, cfg, fkey, None))
    return plan


def validate_study(path: Path) -> tuple[StudySpec, Plan]:
    """`ablate validate`: load and expand the study file at every scale (the first error raises); return its
    spec and plan at the file's own scale."""
    for scale in SCALES:
        expand(load_study(path, scale))
    spec = load_study(path)
    return spec, expand(spec)
