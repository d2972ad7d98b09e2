"""Probe a pretraining run midway: its resume state (weights at the last checkpoint step) as a checkpoint.

A pretraining cell saves its full state every `runtime.checkpoint_every` steps under <run>/resume/.
This copies the model weights of such a state into a probe study's store as a finished pretraining cell
(`checkpoint/` via save_pretrained, a spec naming the source and step), so `ablate run <probe study>`
fine-tunes from it. The probe study must have the same pretraining settings as the source run (so the
same key): only its name and fine-tuning settings differ.

    cp -r benchmarks/runs/sweep-h128-l2-80m/pretrain/<key>/resume /tmp/resume-9400   # while the run is at step 9400
    python benchmarks/snapshot_checkpoint.py /tmp/resume-9400 benchmarks/results/probes/mid-9400.yaml
    ablate run benchmarks/results/probes/mid-9400.yaml --results benchmarks/runs
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("resume", type=Path, help="a copy of <run>/resume/ (state.json + tensors.safetensors)")
    ap.add_argument("study", type=Path, help="the probe study (one pretraining cell, the source run's settings)")
    ap.add_argument("--source", default="", help="where the state came from, recorded in the spec")
    ap.add_argument("--results", type=Path, default=REPO / "benchmarks" / "runs")
    args = ap.parse_args()

    from safetensors.torch import load_file

    from ablate.run.prepare import tokenizer_for
    from ablate.study.cells import expand
    from ablate.study.identity import pretrain_identity
    from ablate.model import build_mlm
    from ablate.study.load import load_study
    from ablate.store import Store, atomic_write_json

    plan = expand(load_study(args.study, None))
    if len({c.key for c in plan.pretrain}) != 1:
        sys.exit("the probe study must have exactly one pretraining cell")
    cell, store = plan.pretrain[0], Store(args.results)
    state = json.loads((args.resume / "state.json").read_text())
    tensors = load_file(str(args.resume / "tensors.safetensors"))
    model = build_mlm(cell.config.model, cell.config.data, tokenizer_for(store, cell.config).get_vocab_size())
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    run = store.pretrain(plan.study.name, cell.key)
    model.save_pretrained(str(run.checkpoint))
    counters = state["counters"]
    atomic_write_json(run.path / "spec.json", {
        # not the run's identity: this cell's weights are not what the run ends with, so `ablate run`
        # never copies it, or the fine-tunes made from it, into another study (ablate/run/reuse.py)
        "identity": {**pretrain_identity(cell.config, cell.seed), "snapshot_step": counters["step"]},
        "labels": {"variant": cell.variant, "seed": cell.seed, "snapshot_of": args.source or str(args.resume),
                   "snapshot_step": counters["step"]}})
    run.finish({"snapshot": True, "steps": counters["step"], "tokens_seen": counters["tokens"],
                "final_train_loss": counters.get("last_loss"), "note": "weights at an intermediate step of a "
                f"{cell.config.pretrain.total_steps}-step run; not a finished cell (no held-out evaluation)"})
    print(f"{run.path}: step {counters['step']} of {cell.config.pretrain.total_steps}")


if __name__ == "__main__":
    main()
