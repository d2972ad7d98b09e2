"""The `ablate` command: thin Typer wrappers over the library.

Heavy imports (torch, transformers, pandas) happen inside the commands, so `ablate --help`
starts fast. A UserError becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ablate.errors import UserError

app = typer.Typer(
    help="Reproduce the RoBERTa paper's pretraining comparisons on small models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

StudyArg = Annotated[Path, typer.Argument(help="Study file (YAML), e.g. studies/masking.yaml")]
ScaleOpt = Annotated[Optional[str], typer.Option("--scale", help="Scale preset: tiny | cpu | paper (default: the file's)")]
ResultsOpt = Annotated[Optional[Path], typer.Option("--results", help="Results directory (default: $ABLATE_RESULTS_DIR or ./results)")]


def user_errors(fn):
    """Print a UserError as one line and exit 2; nothing else is written."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            typer.echo(f"error: {one_line(str(e))}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def one_line(message: str, limit: int = 600) -> str:
    """Control characters escaped and length capped, so an error is always exactly one readable line."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _store(results: Optional[Path]):
    from ablate.paths import results_root
    from ablate.store import Store

    return Store(results_root(results))


@app.command()
@user_errors
def validate(studies: Annotated[list[Path], typer.Argument(help="Study files to check")]) -> None:
    """Check study files at every scale without running anything."""
    from ablate.expand import expand
    from ablate.spec import SCALES, load_study

    for path in studies:
        for scale in SCALES:
            plan = expand(load_study(path, scale))
        spec = load_study(path)
        plan = expand(spec)
        typer.echo(f"ok: {path} ({spec.name}: {len(spec.variants)} variants, {len(plan.pretrain)} pretraining "
                   f"and {len(plan.finetune)} fine-tuning cells at scale {spec.scale})")


@app.command()
@user_errors
def plan(study: StudyArg, scale: ScaleOpt = None, results: ResultsOpt = None) -> None:
    """List the cells of a study with their hashes, status and rough compute."""
    from ablate.expand import expand
    from ablate.planning import plan_rows
    from ablate.spec import load_study

    spec = load_study(study, scale)
    rows, summary = plan_rows(expand(spec), _store(results))
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{spec.name} at scale {spec.scale}")
    for col in ("stage", "cell", "key", "status", "compute"):
        table.add_column(col)
    for r in rows:
        table.add_row(*(str(r[c]) for c in ("stage", "cell", "key", "status", "compute")))
    console = Console()
    console.print(table)
    console.print(summary)


@app.command()
@user_errors
def run(
    study: StudyArg,
    scale: ScaleOpt = None,
    results: ResultsOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Rerun cells that are already done")] = False,
    threads: Annotated[Optional[int], typer.Option(help="Torch threads per cell (default: all cores; with --jobs N, "
                                                        "cores // N; on Ray, the CPUs per cell)")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto | cpu | cuda")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars")] = True,
    wait: Annotated[bool, typer.Option("--wait", help="If another run holds the results directory, wait for it")] = False,
    jobs: Annotated[int, typer.Option("--jobs", min=1, help="Cells at once on this machine (local executor)")] = 1,
    executor: Annotated[str, typer.Option("--executor", help="local | ray (each cell a Ray task)")] = "local",
    address: Annotated[Optional[str], typer.Option("--address", help="Ray cluster: auto | ray://host:port "
                                                   "(default: $RAY_ADDRESS, else a Ray started on this machine)")] = None,
    cpus_per_cell: Annotated[Optional[float], typer.Option("--cpus-per-cell", help="Ray: CPUs each cell asks for "
                                                           "(default: runtime.cpus_per_cell, --threads, else 1)")] = None,
    gpus_per_cell: Annotated[Optional[float], typer.Option("--gpus-per-cell", help="Ray: GPUs each cell asks for "
                                                           "(default: runtime.gpus_per_cell, else 0)")] = None,
) -> None:
    """Pretrain and fine-tune every pending cell of a study (finished cells are skipped)."""
    from ablate.expand import expand
    from ablate.spec import load_study

    if executor not in ("local", "ray"):
        raise UserError(f"--executor must be local or ray, not {executor!r}")
    if executor == "local" and (address is not None or cpus_per_cell is not None or gpus_per_cell is not None):
        raise UserError("--address, --cpus-per-cell and --gpus-per-cell need --executor ray")
    if executor == "ray" and jobs > 1:
        raise UserError("--jobs is for the local executor; on Ray, as many cells run at once as the cluster fits")
    if executor == "ray":
        from ablate.executors import RAY_INSTALL, ray_available

        if not ray_available():
            raise UserError(f"--executor ray needs Ray, which is not installed: {RAY_INSTALL}")
    spec = load_study(study, scale)
    runtime = {k: v for k, v in {"threads": threads, "device": device, "cpus_per_cell": cpus_per_cell,
                                 "gpus_per_cell": gpus_per_cell}.items() if v is not None}
    if runtime:
        from pydantic import ValidationError

        try:
            spec = spec.model_copy(update={"runtime": spec.runtime.model_validate({**spec.runtime.model_dump(), **runtime})})
        except ValidationError as e:
            err = e.errors()[0]
            raise UserError(f"bad runtime option {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    from ablate.executors import JobsExecutor, LocalExecutor, RayExecutor
    from ablate.pipeline import run as run_plan
    from ablate.progress import Reporter

    ex = RayExecutor(address) if executor == "ray" else JobsExecutor(jobs) if jobs > 1 else LocalExecutor()
    counts = run_plan(expand(spec), _store(results), force=force, reporter=Reporter(enabled=progress), wait=wait,
                      executor=ex)
    reused = f", {counts['reused']} copied from other studies" if counts.get("reused") else ""
    typer.echo(f"{spec.name}: {counts['ran']} ran, {counts['skipped']} already done{reused}, {counts['failed']} failed")


@app.command()
@user_errors
def report(
    results: ResultsOpt = None,
    out: Annotated[Path, typer.Option("--out", help="Report directory")] = Path("reports"),
) -> None:
    """Aggregate every study in the results directory into HTML reports."""
    from ablate.reporting import build_reports

    written = build_reports(_store(results), out)
    for path in written:
        typer.echo(f"wrote {path}")


@app.command("ls")
@user_errors
def ls(results: ResultsOpt = None) -> None:
    """Studies and cells in the results directory, with their status."""
    from ablate.reporting import study_status

    store = _store(results)
    names = store.studies()
    if not names:
        typer.echo(f"no studies in {store.root}")
        return
    for name in names:
        s = study_status(store, name)
        typer.echo(f"{name} (scale {s['scale']}): {s['done']} done, {s['failed']} failed, {s['pending']} pending")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
