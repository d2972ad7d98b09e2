"""GLUE tasks with both a train and a validation split in the local data."""

from ablate.tasks import TASKS, TaskSpec


def _glue(name: str, cols: tuple[str, ...], metrics: tuple[str, ...], num_labels: int = 2) -> TaskSpec:
    return TASKS.register(
        name,
        TaskSpec(
            name=name,
            hub_path="nyu-mll/glue",
            hub_name=name,
            local_dir=f"glue/{name}",
            train_split="train",
            eval_split="validation",
            text_columns=cols,
            num_labels=num_labels,
            metrics=metrics,
        ),
    )


SST2 = _glue("sst2", ("sentence",), ("accuracy",))
MRPC = _glue("mrpc", ("sentence1", "sentence2"), ("accuracy", "f1"))
RTE = _glue("rte", ("sentence1", "sentence2"), ("accuracy",))
