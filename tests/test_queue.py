"""Several studies as one queue: one lock, shared cells computed once, and a scheduler that keeps --jobs N workers
busy (tested on a simulated executor with a clock, not with real training)."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from typer.testing import CliRunner

from ablate.cli import app
from ablate.run import pipeline
from ablate.run.jobs import Outcome, cell_identity, cell_labels
from ablate.store import Store, read_json
from ablate.study.cells import expand
from ablate.study.load import load_study

STUDY = """\
name: {name}
description: a micro study
base:
  model: {{hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64}}
  data: {{vocab_size: 400, tokenizer_train_chars: 20000, max_len: 32, train_tokens: 3000, heldout_tokens: 1000}}
  pretrain: {{steps: {steps}, batch_size: 8}}
  finetune: {{tasks: [sst2], train_size: 100, epochs: 1, batch_size: 16, max_len: 32, random_init_control: {ri}}}
variants:
{variants}
baseline: {baseline}
seeds: {{pretrain: [0], finetune: {ft}}}
runtime: {{threads: 1, log_every: 2, progress: false}}
"""


def study(tmp_path, name, variants: dict, ft="[0, 1, 2, 3]", ri="false", steps=4):
    body = "\n".join(f"  {v}: {{pretrain: {{mask_prob: {p}}}}}" for v, p in variants.items())
    path = tmp_path / f"{name}.yaml"
    path.write_text(STUDY.format(name=name, variants=body, baseline=next(iter(variants)), ft=ft, ri=ri, steps=steps))
    return path


class SimExecutor:
    """A stand-in executor with a clock: a pretraining cell takes 10 units, a fine-tune 1; a finished cell is
    written to the store (spec, weights, metrics) as a real one would be."""

    name, concurrent = "sim", True

    def __init__(self, n: int):
        self.n, self.now, self.running, self.started = n, 0.0, [], []

    def start(self, store, ctx, reporter):
        self.store, self.ctx = store, ctx

    def slots(self):
        return self.n

    def submit(self, job):
        assert len(self.running) < self.n
        self.running.append((self.now + (10 if job.kind == "pretrain" else 1), job.order, job))
        self.started.append((self.now, job))

    def wait(self):
        self.running.sort(key=lambda r: r[:2])
        end, _, job = self.running.pop(0)
        self.now = end
        study = job.context(self.ctx).study
        run = self.store.pretrain(study, job.key) if job.kind == "pretrain" else self.store.finetune(study, job.key)
        run.begin(cell_identity(job.cell), cell_labels(job.cell))
        if job.kind == "pretrain":
            run.checkpoint.mkdir(exist_ok=True)
            (run.checkpoint / "model.safetensors").write_bytes(b"w")
        run.finish({"heldout_ppl": 1.0} if job.kind == "pretrain" else {"metrics": {"accuracy": 0.5}})
        return [(job, Outcome("ok"))]

    def close(self):
        pass


def test_jobs_keep_every_worker_busy_until_the_last_pretraining_is_done(tmp_path, tiny_data_root):
    """Four pretraining cells (10 units each) with four fine-tunes each (1 unit), three workers. Started in
    the sequential order, the fourth pretraining cell waits behind twelve fine-tunes and then runs alone while
    two workers idle (26 units); pretraining first keeps all three busy until it starts (22 units, the best)."""
    plan = expand(load_study(study(tmp_path, "four", {f"v{i}": 0.1 + i / 100 for i in range(4)}), "tiny"))
    sim = SimExecutor(3)
    counts = pipeline.run(plan, Store(tmp_path / "results"), executor=sim)
    assert counts == {"ran": 20, "skipped": 0, "failed": 0, "reused": 0}
    assert sim.now == 22
    kinds = [job.kind for _, job in sim.started]
    assert kinds == ["pretrain"] * 4 + ["finetune"] * 16  # every ready pretraining cell before any fine-tune
    last_pretrain = max(t for t, job in sim.started if job.kind == "pretrain")
    assert last_pretrain == 10  # as soon as a worker came free


def test_one_worker_keeps_the_sequential_order(tmp_path, tiny_data_root):
    plan = expand(load_study(study(tmp_path, "two", {"a": 0.1, "b": 0.2}, ft="[0]"), "tiny"))
    sim = SimExecutor(1)
    sim.concurrent = False
    pipeline.run(plan, Store(tmp_path / "results"), executor=sim)
    assert [(j.kind, j.cell.variant) for _, j in sim.started] == [("pretrain", "a"), ("finetune", "a"),
                                                                   ("pretrain", "b"), ("finetune", "b")]


def test_several_studies_are_one_queue_under_one_lock_and_share_cells(tmp_path, tiny_data_root, monkeypatch):
    a = expand(load_study(study(tmp_path, "a", {"x": 0.15, "y": 0.2}, ft="[0]", ri="true"), "tiny"))
    b = expand(load_study(study(tmp_path, "b", {"x": 0.15, "z": 0.3}, ft="[0]", ri="true"), "tiny"))
    locks = []
    real_lock = pipeline.results_lock

    @contextmanager
    def counting(root, wait=False):
        locks.append(root)
        with real_lock(root, wait=wait):
            yield

    monkeypatch.setattr(pipeline, "results_lock", counting)
    store, sim = Store(tmp_path / "results"), SimExecutor(3)
    counts = pipeline.run_plans([a, b], store, executor=sim)
    assert len(locks) == 1
    # x's pretraining, its fine-tune and the random-init control are the same cells in both: computed once
    keys = [job.key for _, job in sim.started]
    assert len(keys) == len(set(keys)) == 3 + 3 + 1  # pretrain x, y, z; their fine-tunes; random init
    # studies in order: a's two pretrainings and a's random-init control (needs no checkpoint) take the three
    # workers at once; b's own pretraining starts on the first worker a leaves free
    assert [(t, j.kind, j.context(None).study) for t, j in sim.started][:4] == [
        (0, "pretrain", "a"), (0, "pretrain", "a"), (0, "finetune", "a"), (1, "pretrain", "b")]
    assert counts["a"] == {"ran": 5, "skipped": 0, "failed": 0, "reused": 0}
    assert counts["b"] == {"ran": 2, "skipped": 0, "failed": 0, "reused": 3}
    for kind, cell in [("pretrain", c) for c in b.pretrain] + [("finetune", c) for c in b.finetune]:
        run = store.pretrain("b", cell.key) if kind == "pretrain" else store.finetune("b", cell.key)
        assert run.is_done(), cell.label
        labels = read_json(run.path / "spec.json")["labels"]
        shared = cell.key in {c.key for c in a.pretrain} | {c.key for c in a.finetune}
        assert labels.get("copied_from") == ("a" if shared else None), cell.label
    x = next(c for c in b.pretrain if c.variant == "x")
    assert store.pretrain("b", x.key).has_weights()  # b's fine-tunes of x could start from it
    again = SimExecutor(3)
    counts = pipeline.run_plans([a, b, a], store, executor=again)  # a study named twice runs once
    assert not again.started and set(counts) == {"a", "b"}


def test_studies_finish_in_the_order_given_without_idle_workers(tmp_path, tiny_data_root):
    """Two studies of two pretraining cells (10 units) with four fine-tunes each (1 unit), two workers. Pretraining
    first across the whole queue would finish neither study before 20 units and both at 28; in the order given,
    the first is done at 14 and the second still at 28: no worker idles while a cell is ready."""
    a = expand(load_study(study(tmp_path, "a", {"p": 0.11, "q": 0.12}), "tiny"))
    b = expand(load_study(study(tmp_path, "b", {"r": 0.13, "s": 0.14}), "tiny"))
    sim = SimExecutor(2)
    pipeline.run_plans([a, b], Store(tmp_path / "results"), executor=sim)
    ends = {}
    for t, job in sim.started:
        name = job.context(None).study
        ends[name] = max(ends.get(name, 0), t + (10 if job.kind == "pretrain" else 1))
    assert ends == {"a": 14, "b": 28} and sim.now == 28
    first_b = min(t for t, j in sim.started if j.context(None).study == "b")
    assert first_b == 14  # b starts when a has nothing ready left, never before
    assert [j.kind for _, j in sim.started if j.context(None).study == "b"] == ["pretrain"] * 2 + ["finetune"] * 8


def test_two_files_with_one_study_name_are_refused(tmp_path, tiny_data_root):
    a = expand(load_study(study(tmp_path, "a", {"x": 0.15}), "tiny"))
    other = tmp_path / "other"
    other.mkdir()
    b = expand(load_study(study(other, "a", {"q": 0.2}), "tiny"))
    with pytest.raises(pipeline.UserError, match="both study 'a'"):
        pipeline.run_plans([a, b], Store(tmp_path / "results"), executor=SimExecutor(1))
    assert not (tmp_path / "results").exists()


def test_cli_runs_plans_and_lists_several_studies(tmp_path, tiny_data_root):
    """The real pipeline, tiny: `ablate run a.yaml b.yaml` trains the shared cell once and copies it."""
    a = study(tmp_path, "a", {"x": 0.15}, ft="[0]", steps=2)
    b = study(tmp_path, "b", {"x": 0.15}, ft="[0]", steps=2)
    res = str(tmp_path / "results")
    r = CliRunner().invoke(app, ["run", str(a), str(b), "--results", res, "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "a: 2 ran, 0 already done, 0 failed" in r.output
    assert "b: 0 ran, 0 already done, 2 copied from other studies, 0 failed" in r.output
    r = CliRunner().invoke(app, ["plan", str(a), str(b), "--results", res])
    assert r.exit_code == 0 and "a at scale" in r.output and "b at scale" in r.output, r.output
    r = CliRunner().invoke(app, ["ls", str(b), "a", "--results", res])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines() == ["b (scale cpu): 2 done, 0 failed, 0 pending",
                                     "a (scale cpu): 2 done, 0 failed, 0 pending"]
    r = CliRunner().invoke(app, ["ls", "nope", "--results", res])
    assert r.exit_code == 2 and "no study 'nope'" in r.output


def _hand_made(store: Store, plan, weights: bool) -> None:
    """A finished study in the store, as a clone has it: results committed, weights (maybe) not."""
    for kind, cell in [("pretrain", c) for c in plan.pretrain] + [("finetune", c) for c in plan.finetune]:
        run = store.pretrain(plan.study.name, cell.key) if kind == "pretrain" else store.finetune(plan.study.name, cell.key)
        run.begin(cell_identity(cell), cell_labels(cell))
        if kind == "pretrain":
            (run.path / "loss.jsonl").write_text('{"step": 2, "loss": 5.0}\n')
            if weights:
                run.checkpoint.mkdir()
                (run.checkpoint / "model.safetensors").write_bytes(b"w")
        else:
            (run.path / "curve.jsonl").write_text('{"epoch": 1, "loss": 0.6}\n')
        run.finish({"heldout_ppl": 7.0} if kind == "pretrain" else {"metrics": {"accuracy": 0.75}})


class NoWork(SimExecutor):
    def submit(self, job):
        raise AssertionError(f"nothing should run, but {job.label} was submitted")


def test_reuse_without_weights_copies_the_fine_tunes_and_pretrains_nothing(tmp_path, tiny_data_root):
    """Weights are never committed: on a clone, another study's finished pretraining cell has no checkpoint. When
    every fine-tune of it that this study needs is finished there too, the results are all it needs."""
    from ablate.run.status import plan_rows

    other = expand(load_study(study(tmp_path, "other", {"x": 0.15}, ft="[0, 1]", ri="true"), "tiny"))
    here_dir = tmp_path / "here"
    here_dir.mkdir()
    here = expand(load_study(study(here_dir, "here", {"y": 0.15}, ft="[0, 1]", ri="true"), "tiny"))
    assert {c.key for c in here.pretrain + here.finetune} == {c.key for c in other.pretrain + other.finetune}
    store = Store(tmp_path / "results")
    _hand_made(store, other, weights=False)
    rows, summary = plan_rows(here, store)
    assert {r["status"] for r in rows} == {"in other"}, rows  # `ablate plan` says they will be copied
    counts = pipeline.run(here, store, executor=NoWork(2))
    assert counts == {"ran": 0, "skipped": 0, "failed": 0, "reused": 1 + 2 + 2}
    pre = store.pretrain("here", here.pretrain[0].key)
    assert pre.is_done() and not pre.has_weights() and pre.metrics() == {"heldout_ppl": 7.0}
    assert (pre.path / "loss.jsonl").read_text() == '{"step": 2, "loss": 5.0}\n'
    assert read_json(pre.path / "spec.json")["labels"]["variant"] == "y"
    for ft in here.finetune:
        run = store.finetune("here", ft.key)
        assert run.metrics() == {"metrics": {"accuracy": 0.75}} and (run.path / "curve.jsonl").exists()
        assert read_json(run.path / "spec.json")["labels"]["copied_from"] == "other"
    assert pipeline.run(here, store, executor=NoWork(2))["skipped"] == 5  # and it stays done


def test_reuse_without_weights_pretrains_when_a_pending_fine_tune_needs_them(tmp_path, tiny_data_root):
    other = expand(load_study(study(tmp_path, "other", {"x": 0.15}, ft="[0]"), "tiny"))
    here_dir = tmp_path / "here"
    here_dir.mkdir()
    here = expand(load_study(study(here_dir, "here", {"x": 0.15}, ft="[0, 1]"), "tiny"))  # seed 1 exists nowhere
    store = Store(tmp_path / "results")
    _hand_made(store, other, weights=False)
    sim = SimExecutor(2)
    counts = pipeline.run(here, store, executor=sim)
    assert sorted((j.kind, j.cell.seed) for _, j in sim.started) == [("finetune", 1), ("pretrain", 0)]
    assert counts == {"ran": 2, "skipped": 0, "failed": 0, "reused": 1}  # the seed-0 fine-tune is copied
    assert store.pretrain("here", here.pretrain[0].key).has_weights()
