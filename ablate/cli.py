"""The `ablate` command: thin Typer wrappers over the library. Each command parses its options, calls one
library function, and prints.

The library is imported inside the commands (torch, transformers and pandas behind it), so `ablate --help`
starts fast. A UserError becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ablate.errors import UserError
from ablate.paths import results_root
from ablate.store import Store

app = typer.Typer(
    help="Reproduce the RoBERTa paper's pretraining comparisons on small models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

StudiesArg = Annotated[list[Path], typer.Argument(help="Study files (YAML), e.g. studies/masking.yaml or studies/*.yaml")]
ScaleOpt = Annotated[Optional[str], typer.Option("--scale", help="Scale preset: tiny | cpu | gpu | paper | cpu-v1 (default: the file's)")]
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


def _store(results: Optional[Path]) -> Store:
    return Store(results_root(results))  # refuses a root that is not a directory


@app.command()
@user_errors
def validate(studies: Annotated[list[Path], typer.Argument(help="Study files to check")]) -> None:
    """Check study files at every scale, and that their own scale fits in memory, without running anything."""
    from ablate.run.budget import validate as validate_study  # lazy: keeps `ablate --help` fast

    for path in studies:
        spec, plan = validate_study(path)
        typer.echo(f"ok: {path} ({spec.name}: {len(spec.variants)} variants, {len(plan.pretrain)} pretraining "
                   f"and {len(plan.finetune)} fine-tuning cells at scale {spec.scale})")


@app.command()
@user_errors
def plan(studies: StudiesArg, scale: ScaleOpt = None, results: ResultsOpt = None) -> None:
    """List the cells of studies with their hashes, status and rough compute."""
    from rich.console import Console  # lazy, as every import of a command: keeps `ablate --help` fast
    from rich.table import Table

    from ablate.run.status import study_rows  # lazy, as above

    store = _store(results)
    tables = [study_rows(study, scale, store) for study in studies]  # every file loads before anything prints
    console = Console()
    for spec, rows, summary in tables:
        table = Table(title=f"{spec.name} at scale {spec.scale}")
        for col in ("stage", "cell", "key", "status", "compute"):
            table.add_column(col)
        for r in rows:
            table.add_row(*(str(r[c]) for c in ("stage", "cell", "key", "status", "compute")))
        console.print(table)
        console.print(summary)


@app.command()
@user_errors
def run(
    studies: StudiesArg,
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
    """Pretrain and fine-tune every pending cell of the studies, as one queue (finished cells are skipped)."""
    from ablate.run.pipeline import RunOptions, run_studies  # lazy: torch and transformers load here

    opts = RunOptions(scale=scale, results=results, force=force, wait=wait, progress=progress, jobs=jobs,
                      executor=executor, address=address, threads=threads, device=device,
                      cpus_per_cell=cpus_per_cell, gpus_per_cell=gpus_per_cell)
    for spec, counts in run_studies(studies, opts):
        reused = f", {counts['reused']} copied from other studies" if counts.get("reused") else ""
        typer.echo(f"{spec.name}: {counts['ran']} ran, {counts['skipped']} already done{reused}, "
                   f"{counts['failed']} failed")


@app.command()
@user_errors
def report(
    results: ResultsOpt = None,
    out: Annotated[Path, typer.Option("--out", help="Report directory")] = Path("reports"),
) -> None:
    """Aggregate every study in the results directory into HTML reports."""
    from ablate.report.build import build_reports  # lazy: pandas and matplotlib load here

    written = build_reports(_store(results), out)
    for path in written:
        typer.echo(f"wrote {path}")


@app.command("ls")
@user_errors
def ls(
    studies: Annotated[Optional[list[str]], typer.Argument(help="Study files or names (default: every study)")] = None,
    results: ResultsOpt = None,
) -> None:
    """Studies and cells in the results directory, with their status."""
    from ablate.run.status import study_names, study_status  # lazy: keeps `ablate --help` fast

    store = _store(results)
    names = study_names(store, studies or [])
    if not names:
        typer.echo(f"no studies in {store.root}")
        return
    for name in names:
        s = study_status(store, name)
        extra = "".join(f", {s[k]} {k}" for k in ("weights lost", "to copy") if s[k])
        snaps = f", {s['snapshot']} snapshots (probes of unfinished runs)" if s["snapshot"] else ""
        typer.echo(f"{name} (scale {s['scale']}): {s['done']} done, {s['failed']} failed, {s['pending']} pending"
                   f"{extra}{snaps}")


@app.command()
@user_errors
def export(
    cell: Annotated[str, typer.Argument(help="A pretraining cell's key, or a unique prefix of it (see `ablate plan`)")],
    out: Annotated[Path, typer.Argument(help="New folder for the checkpoint")],
    results: ResultsOpt = None,
) -> None:
    """Copy a finished pretraining cell's checkpoint (weights, tokenizer, model card) to a new folder."""
    from ablate.run.export import export_cell  # lazy: keeps `ablate --help` fast

    key, source, notes = export_cell(_store(results), cell, out)
    for note in notes:
        typer.echo(f"note: {note}")
    typer.echo(f"exported {key} ({source}) to {out}")


@app.command()
@user_errors
def gc(
    studies: Annotated[list[Path], typer.Argument(help="Every study file whose cells to keep, e.g. studies/*.yaml")],
    results: ResultsOpt = None,
    delete: Annotated[bool, typer.Option("--delete", help="Remove them (default: only list them)")] = False,
) -> None:
    """List the cells and caches in the results directory that none of the study files produces (at any scale)."""
    from ablate.run.gc import collect_garbage  # lazy: keeps `ablate --help` fast

    store = _store(results)
    found = collect_garbage(store, studies, delete=delete)
    verb = "removed" if delete else "would remove"
    for o in found:
        typer.echo(f"{verb} {o.path} ({_size(o.bytes)}: {o.why})")
    total = sum(o.bytes for o in found)
    hint = "" if delete or not found else "; run again with --delete to remove them"
    typer.echo(f"{len(found)} orphans in {store.root}, {_size(total)}{hint}")


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"  # pragma: no cover


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
