"""The study schema: frozen, validated pydantic models (unknown keys are errors).

A study file (YAML) has a name, a description, a `base` config in sections
(model, data, pretrain, finetune), named `variants` as overrides of the base, a
`baseline` variant, `seeds`, a default `scale`, optional per-scale overrides
(`scales`), and `runtime` settings (ablate.study.load merges and checks them).
Science settings (ModelSpec, DataSpec, PretrainSpec, FinetuneSpec) decide results
and are hashed (ablate.study.identity); RuntimeSpec (threads, device, log interval)
only changes speed and is not. Input formats and tasks are checked against their
registries (ablate.data.formats.FORMATS, ablate.tasks.TASKS), which is why those
sit below this module.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Optional

from pydantic import Field, field_validator, model_validator

from ablate.data.formats import FORMATS
from ablate.errors import UserError
from ablate.study.strict import AtKeys, Frozen, registered
from ablate.tasks import TASKS

SCALES = ("tiny", "cpu", "gpu", "paper", "cpu-v1")
Scale = Literal["tiny", "cpu", "gpu", "paper", "cpu-v1"]
NAME_RE = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"  # matched in full (re.fullmatch): "a\n" is not a name
CORPUS_RE = r"[A-Za-z0-9][A-Za-z0-9_.-]*"  # each part of a corpus path under the data root
SHARED_HELDOUT_FORMAT = "full_sentences"  # the held-out packing every pretrained model is also scored on


TaskName = Annotated[str, registered(TASKS)]


class ModelSpec(Frozen):
    """Shape of the scaled-down RoBERTa encoder."""

    hidden_size: int = Field(128, ge=8, le=8192)  # width of every token vector
    num_layers: int = Field(4, ge=1, le=96)  # transformer blocks
    num_heads: int = Field(4, ge=1, le=128)  # attention heads; must divide hidden_size
    intermediate_size: int = Field(512, ge=8, le=65536)  # feed-forward width (4x hidden in RoBERTa)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)  # hidden and attention dropout, as in the paper
    # Recipe settings (issue 26; each hashed only away from its default, so every earlier key stays): where the
    # LayerNorms sit (post: RoBERTa/BERT; pre: before each sublayer plus one after the last block, saved as
    # transformers' roberta-prelayernorm), and the standard deviation of the initial weights (RoBERTa: 0.02).
    norm: Literal["post", "pre"] = "post"
    init_range: float = Field(0.02, gt=0, le=1.0)

    @model_validator(mode="after")
    def _heads_divide(self) -> "ModelSpec":
        if self.hidden_size % self.num_heads:
            raise AtKeys(("num_heads", "hidden_size"),
                         f"num_heads ({self.num_heads}) must divide hidden_size ({self.hidden_size})")
        return self

    def non_embedding_params(self) -> int:
        """Parameters in the transformer blocks (the compute-optimal arithmetic counts these)."""
        h, i = self.hidden_size, self.intermediate_size
        per_layer = 4 * h * h + 4 * h + 2 * h * i + i + h + 4 * h
        return self.num_layers * per_layer


class DataSpec(Frozen):
    """Pretraining text, tokenizer and input format."""

    corpus: str = "corpus"  # a folder under the data root (see ablate.paths): a name or a relative path within it
    tokenizer: Literal["byte_bpe", "wordpiece"] = "byte_bpe"  # RoBERTa's byte-level BPE, or BERT's WordPiece
    vocab_size: int = Field(8192, ge=300, le=262144)
    tokenizer_train_chars: int = Field(20_000_000, ge=10_000)  # characters of train text the tokenizer learns from
    format: str = "full_sentences"  # input format (paper section 4.2): see ablate.data.formats.FORMATS
    max_len: int = Field(128, ge=16, le=4096)  # tokens per input, special tokens included
    train_tokens: Optional[int] = Field(None, ge=1000)  # cap on distinct pretraining tokens (a corpus prefix); None = all
    heldout_tokens: int = Field(200_000, ge=1000)  # validation tokens for held-out MLM perplexity
    # Held-out text by characters instead: the validation split's first whole documents up to this many characters,
    # the same text whatever the tokenizer (bits per character then compare like with like); None = by tokens.
    heldout_chars: Optional[int] = Field(None, ge=1000)
    # The data-size axis (paper Table 4): use this fraction of train_tokens (or of the whole corpus). Smaller fractions are
    # prefixes of larger ones (whole documents, corpus order), so more data only adds text.
    data_fraction: float = Field(1.0, gt=0, le=1)

    @property
    def train_token_budget(self) -> Optional[int]:
        return None if self.train_tokens is None else max(1, int(self.train_tokens * self.data_fraction))

    @field_validator("format")
    @classmethod
    def _format_known(cls, v: str) -> str:
        try:
            FORMATS.get(v)
        except UserError as e:  # with did-you-mean; a ValueError names the key and its line
            raise ValueError(str(e)) from None
        return v

    @field_validator("corpus")
    @classmethod
    def _corpus_under_data_root(cls, v: str) -> str:
        parts = v.split("/")
        if not v or v.startswith("/") or not all(re.fullmatch(CORPUS_RE, p) for p in parts) or ".." in parts:
            raise ValueError(f"must name a folder under the data root ({CORPUS_RE} parts joined by '/', no '..', "
                             f"not absolute; got {v!r})")
        return v


class PretrainSpec(Frozen):
    """The masked-language-model pretraining run."""

    steps: int = Field(1000, ge=1, le=10_000_000)  # optimizer steps
    batch_size: int = Field(64, ge=1, le=1_000_000)  # sequences per optimizer step
    lr: float = Field(5e-4, gt=0, le=1.0)  # peak learning rate
    warmup_ratio: float = Field(0.06, ge=0, lt=1)  # linear warmup, then linear decay to 0
    schedule: Literal["linear", "cosine"] = "linear"  # the decay after warmup: linear (RoBERTa) or cosine, to 0
    weight_decay: float = Field(0.01, ge=0, le=1)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.98, ge=0, lt=1)  # RoBERTa's 0.98 (BERT used 0.999)
    eps: float = Field(1e-6, gt=0, le=1e-2)
    grad_clip: float = Field(1.0, ge=0)  # 0 disables clipping
    masking: Literal["static", "dynamic"] = "dynamic"
    static_copies: int = Field(1, ge=1, le=1000)  # k: masked copies for static masking (BERT: 10)
    mask_prob: float = Field(0.15, gt=0, lt=1)  # fraction of tokens selected
    mask_token_frac: float = Field(0.8, ge=0, le=1)  # of selected: replaced by <mask>
    random_token_frac: float = Field(0.1, ge=0, le=1)  # of selected: replaced by a random token
    nsp: bool = False  # next-sentence prediction loss (needs a pair format)
    # The equal-compute batch ladder (paper Table 3): a rung multiplies the sequences per step by k and
    # divides the steps by k, so batch x steps stays constant at every scale; its learning rate is
    # lr x lr_multiplier (tuned per rung, as the paper did; the study file says how it was chosen).
    batch_multiplier: int = Field(1, ge=1, le=4096)
    steps_multiplier: float = Field(1.0, gt=0, le=1000)  # "pretrain longer" (Table 4): steps x this
    lr_multiplier: float = Field(1.0, gt=0, le=1000)
    micro_batch_size: Optional[int] = Field(None, ge=1)  # gradient accumulation chunk; None = whole batch at once
    # A sequence-length schedule (BERT: 128 for 90% of the steps, then 512): the first short_fraction of the steps
    # train on blocks of short_len tokens, max_len // short_len times as many per step (the same tokens per step),
    # packed in the same format; the rest at max_len, which fine-tuning and the held-out score use. None: max_len only.
    short_len: Optional[int] = Field(None, ge=8, le=4096)
    short_fraction: float = Field(0.9, gt=0, lt=1)

    @model_validator(mode="after")
    def _fractions(self) -> "PretrainSpec":
        if self.mask_token_frac + self.random_token_frac > 1 + 1e-9:
            raise AtKeys(("random_token_frac", "mask_token_frac"), "mask_token_frac + random_token_frac must be at most 1")
        if self.short_len is None and self.short_fraction != 0.9:  # (the default: a dumped config round-trips)
            raise AtKeys(("short_fraction",), "short_fraction needs short_len")
        if self.batch_multiplier > self.steps * self.steps_multiplier:
            raise AtKeys(("batch_multiplier", "steps", "steps_multiplier"),
                         f"batch_multiplier ({self.batch_multiplier}) leaves no steps (steps {self.steps})")
        return self

    @property
    def total_batch(self) -> int:
        """Sequences per optimizer step."""
        return self.batch_size * self.batch_multiplier

    @property
    def total_steps(self) -> int:
        """Optimizer steps (batch x steps is the same on every rung of the ladder)."""
        return max(1, int(self.steps * self.steps_multiplier) // self.batch_multiplier)

    @property
    def peak_lr(self) -> float:
        return self.lr * self.lr_multiplier

    @property
    def short_steps(self) -> int:
        """Optimizer steps at short_len (0 without a length schedule)."""
        return 0 if self.short_len is None else int(round(self.total_steps * self.short_fraction))


class FinetuneSpec(Frozen):
    """Fine-tuning every checkpoint on downstream tasks."""

    tasks: tuple[TaskName, ...] = ("sst2", "mrpc")
    train_size: Optional[int] = Field(None, ge=10)  # examples of the train split used; None = all
    epochs: float = Field(3.0, gt=0, le=100)
    lr: float = Field(1e-4, gt=0, le=1.0)
    batch_size: int = Field(32, ge=1, le=4096)
    max_len: int = Field(128, ge=8, le=4096)
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    weight_decay: float = Field(0.1, ge=0, le=1)
    random_init_control: bool = True  # also fine-tune the same architecture from random init
    # task -> fraction of its validation split to fine-tune on; the rest is scored, whole groups of examples
    # sharing text on one side (SQuAD: articles). For tasks with no local train split (mnli, qnli, squad,
    # squad_v2); reports mark these tasks. Without it a missing train split is an error.
    train_from_validation: dict[TaskName, float] = {}
    lr_by_task: dict[TaskName, float] = {}  # task -> learning rate used instead of `lr` for that task
    # task -> learning rate of the random-init control instead (tuned on its own, so the control stays fair); hashed
    # into random-init cells only, and only when set
    random_init_lr_by_task: dict[TaskName, float] = {}
    # Choosing fine-tuning settings without looking at the scored split: hold out this many examples of each task's
    # train split (never among those fine-tuned on) and score those instead of the validation split. For tuning
    # studies only; hashed only when set. Not for tasks fine-tuned from their validation split.
    tune_on_train: Optional[int] = Field(None, ge=10)
    doc_stride: Optional[int] = Field(None, ge=1, le=2048)  # span tasks: context tokens shared by consecutive
    #                                                         windows over a long context; None = max_len // 4
    max_answer_len: int = Field(30, ge=1, le=1024)  # span tasks: longest answer decoded, in tokens
    n_best: int = Field(20, ge=1, le=1000)  # span tasks: start and end candidates per window when decoding
    # Fine-tuning inputs as the pretraining text is: classification and regression text stripped of outer whitespace
    # before tokenizing (every SST-2 sentence ends in a space that became a lone-space token; fairseq's GLUE
    # preprocessing strips it), and pair tasks given token_type_ids (1 from segment B's first token, as the pair
    # formats pretrain). Each is hashed only when on: the first edition's fine-tunes ran with both off.
    strip_text: bool = True
    pair_token_types: bool = True
    # zero-shot tasks (BLiMP): how a masked LM scores a sentence. word_l2r: pseudo-log-likelihood, masking with each
    # token the later tokens of its word (Kauf & Ivanova 2023); plain: each token alone (Salazar et al. 2020)
    pll: Literal["word_l2r", "plain"] = "word_l2r"
    # hidden and attention dropout while fine-tuning; None = the model's (model.dropout, the pretraining's). A recipe
    # that pretrains without dropout may still want it on a few thousand examples. Hashed only when set.
    dropout: Optional[float] = Field(None, ge=0, lt=1)
    pairs_per_paradigm: Optional[int] = Field(None, ge=1, le=1000)  # BLiMP pairs scored per paradigm; None = all

    @field_validator("tasks")
    @classmethod
    def _tasks_known(cls, tasks: tuple[str, ...]) -> tuple[str, ...]:
        if not tasks:
            raise ValueError("at least one task is needed")
        if len(set(tasks)) != len(tasks):
            raise ValueError("tasks must not repeat")
        return tasks

    @field_validator("train_from_validation")
    @classmethod
    def _fractions_per_task(cls, v: dict[str, float]) -> dict[str, float]:
        for task, frac in v.items():
            if not 0.05 <= frac <= 0.95:
                raise AtKeys((task,), f"the fine-tuning share of the validation split must be in [0.05, 0.95] "
                                      f"(got {frac})")
        return v

    def lr_for(self, task: str, random_init: bool = False) -> float:
        """The fine-tuning learning rate of one task, for a checkpoint or for the random-init control."""
        if random_init and task in self.random_init_lr_by_task:
            return self.random_init_lr_by_task[task]
        return self.lr_by_task.get(task, self.lr)

    @field_validator("lr_by_task", "random_init_lr_by_task")
    @classmethod
    def _lr_per_task(cls, v: dict[str, float]) -> dict[str, float]:
        for task, lr in v.items():
            if not 0 < lr <= 1.0:
                raise AtKeys((task,), f"learning rate must be in (0, 1] (got {lr})")
        return v

    @model_validator(mode="after")
    def _stride_fits(self) -> "FinetuneSpec":
        if self.doc_stride is not None and self.doc_stride >= self.max_len // 2:
            raise AtKeys(("doc_stride", "max_len"),
                         f"doc_stride ({self.doc_stride}) must be under half of max_len ({self.max_len})")
        return self


class RuntimeSpec(Frozen):
    """Plumbing: changes speed, never results. Not part of any hash."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: Optional[int] = Field(None, ge=1, le=1024)  # torch threads; None = all cores
    log_every: int = Field(50, ge=1)  # steps between loss-curve points
    eval_batch_size: int = Field(128, ge=1)
    compile: bool = False  # torch.compile the training step (measured: does not pay on CPU; see benchmarks)
    checkpoint_every: int = Field(200, ge=0)  # steps between mid-cell checkpoints for resume; 0 = not by steps
    # also checkpoint once this many minutes passed since the last one (slow steps: a 512-sequence step takes
    # ~5-10 s on 2 cores, so 200 steps would be half an hour lost to a kill); 0 = by steps only (both 0: never)
    checkpoint_minutes: float = Field(10.0, ge=0)
    progress: bool = True
    # `--executor ray`: what one cell asks of the cluster (default: `threads` CPUs, else 1; no GPU)
    cpus_per_cell: Optional[float] = Field(None, gt=0, le=1024)
    gpus_per_cell: float = Field(0.0, ge=0, le=64)


class Seeds(Frozen):
    pretrain: tuple[int, ...] = (0,)  # one pretrained model per seed and variant
    finetune: tuple[int, ...] = (0, 1, 2)  # fine-tuning seeds per checkpoint

    @field_validator("pretrain", "finetune")
    @classmethod
    def _nonempty_unique(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v:
            raise ValueError("at least one seed is needed")
        if len(set(v)) != len(v):
            raise ValueError("seeds must not repeat")
        if any(s < 0 or s >= 2**31 for s in v):
            raise ValueError("seeds must be in [0, 2**31)")
        return v


class Config(Frozen):
    """The science of one variant: everything that changes results."""

    model: ModelSpec = ModelSpec()
    data: DataSpec = DataSpec()
    pretrain: PretrainSpec = PretrainSpec()
    finetune: FinetuneSpec = FinetuneSpec()

    @model_validator(mode="after")
    def _cross(self) -> "Config":
        if self.pretrain.nsp and not FORMATS.get(self.data.format).pair:
            raise AtKeys(("pretrain.nsp", "data.format"), f"pretrain.nsp needs a pair input format (segment_pair "
                                                          f"or sentence_pair), not {self.data.format}")
        short = self.pretrain.short_len
        if short is not None and (short >= self.data.max_len or self.data.max_len % short):
            raise AtKeys(("pretrain.short_len", "data.max_len"), f"pretrain.short_len ({short}) must be under "
                                                                 f"data.max_len ({self.data.max_len}) and divide it (pretrain.short_len: null trains at max_len only)")
        return self

    def short_config(self) -> Optional["Config"]:
        """The config whose packed blocks the short phase of a length schedule trains on (data.max_len =
        pretrain.short_len); None without a length schedule."""
        if self.pretrain.short_len is None:
            return None
        return self.model_copy(update={"data": self.data.model_copy(update={"max_len": self.pretrain.short_len})})

    def shared_heldout_config(self) -> Optional["Config"]:
        """The config whose held-out blocks every input format is also scored on (FULL-SENTENCES: the same text,
        blocks and masks for all formats, so perplexity compares like for like); None when cfg already packs
        that way."""
        if self.data.format == SHARED_HELDOUT_FORMAT:
            return None
        return self.model_copy(update={"data": self.data.model_copy(update={"format": SHARED_HELDOUT_FORMAT})})

    def training_flops(self, tokens: int, masked: int, vocab: int) -> float:
        """Training FLOPs: 6 x non-embedding params and the attention scores (QK^T, AV; fwd + bwd) per token,
        plus the LM head (dense + decoder) per masked token."""
        m = self.model
        attn = 12 * m.num_layers * self.data.max_len * m.hidden_size
        head = 6 * (m.hidden_size * m.hidden_size + m.hidden_size * vocab)
        return float(tokens * (6 * m.non_embedding_params() + attn) + masked * head)


class StudySpec(Frozen):
    """A whole study, resolved for one scale."""

    name: str
    description: str
    paper_table: Optional[str]
    scale: Scale
    baseline: str
    seeds: Seeds
    variants: dict[str, Config]  # name -> resolved config
    runtime: RuntimeSpec
    source: str  # the study file's text, shown in the report
    path: str


class StudyFile(Frozen):
    """The raw study file, before merging (overrides stay plain dicts, checked when merged)."""

    name: str
    description: str = Field(min_length=1, max_length=10_000)
    paper_table: Optional[str] = Field(None, max_length=200)
    scale: Scale = "cpu"
    base: dict[str, Any] = {}
    scales: dict[Scale, dict[str, Any]] = {}
    variants: dict[str, dict[str, Any]]
    baseline: str
    seeds: Seeds = Seeds()
    runtime: RuntimeSpec = RuntimeSpec()

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(NAME_RE, v):
            raise ValueError(f"study name {v!r} must match {NAME_RE} in full")
        return v

    @field_validator("variants")
    @classmethod
    def _variants(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        if not v:
            raise ValueError("at least one variant is needed")
        for name, body in v.items():
            if not re.fullmatch(NAME_RE, str(name)):
                raise AtKeys(((str(name),),), f"variant name {name!r} must match {NAME_RE} in full")
            if name == "random-init":
                raise AtKeys(((name,),), "'random-init' is reserved for the random-init control")
        return v

    @model_validator(mode="after")
    def _baseline_known(self) -> "StudyFile":
        if self.baseline not in self.variants:
            raise AtKeys(("baseline",), f"baseline {self.baseline!r} is not a variant "
                                        f"(variants: {', '.join(self.variants)})")
        return self
