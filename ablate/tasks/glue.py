"""GLUE tasks as records (hub nyu-mll/glue; local copies under <data root>/glue/<task>/<split>.parquet).

Local data (see the data README): cola, sst2, mrpc, stsb and rte have train and validation; qnli has only
validation and mnli only validation_matched, so offline they need finetune.train_from_validation;
qqp has no local copy at all (online only). Metrics follow GLUE: CoLA Matthews corr., STS-B Pearson and
Spearman, MRPC and QQP accuracy and F1, the rest accuracy; MNLI is scored on the matched split.
"""

from ablate.tasks import TASKS, TaskSpec


def _glue(name: str, cols: tuple[str, ...], metrics: tuple[str, ...], num_labels: int = 2,
          eval_split: str = "validation", **extra) -> TaskSpec:
    return TASKS.register(
        name,
        TaskSpec(
            name=name,
            hub_path="nyu-mll/glue",
            hub_name=name,
            local_dir=f"glue/{name}",
            train_split="train",
            eval_split=eval_split,
            text_columns=cols,
            num_labels=num_labels,
            metrics=metrics,
            benchmark="glue",
            **extra,
        ),
    )


COLA = _glue("cola", ("sentence",), ("matthews_correlation",))
SST2 = _glue("sst2", ("sentence",), ("accuracy",))
MRPC = _glue("mrpc", ("sentence1", "sentence2"), ("accuracy", "f1"), score_metrics=("accuracy", "f1"))
STSB = _glue("stsb", ("sentence1", "sentence2"), ("pearson", "spearman"), num_labels=1, kind="regression",
             score_metrics=("pearson", "spearman"))
QNLI = _glue("qnli", ("question", "sentence"), ("accuracy",))
RTE = _glue("rte", ("sentence1", "sentence2"), ("accuracy",))
MNLI = _glue("mnli", ("premise", "hypothesis"), ("accuracy",), num_labels=3, eval_split="validation_matched")
QQP = _glue("qqp", ("question1", "question2"), ("accuracy", "f1"), score_metrics=("accuracy", "f1"), local=False)
