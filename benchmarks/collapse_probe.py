"""Does a pretrained checkpoint still tell its inputs apart? A check for representation collapse.

A model stuck on the unigram plateau (predicting the same token distribution whatever the input) can
get there by making every position's last hidden state nearly the same vector. Fine-tuning reads the
first position (<s>), so from such a start the classifier sees almost one point for every sentence.
For each checkpoint (and the same architecture at random init) this feeds N SST-2 validation
sentences and prints:

- cos(<s>): mean cosine similarity of the last-layer <s> states of two different sentences (1.0: the
  same vector for every input);
- spread(<s>): the states' standard deviation across sentences, summed over dimensions, over their
  mean norm (0: one point);
- probe(<s>): a logistic regression on the frozen <s> states of 2000 SST-2 training sentences, scored
  on the validation set (the majority label scores 50.9%);
- weight norm: the L2 norm of all weights (a plateau at a large learning rate can inflate it).

    python benchmarks/collapse_probe.py results/batch_size/pretrain/*/checkpoint --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
from embedding_probe import find_tokenizer, random_init  # noqa: E402


def first_states(model, tok, texts: list[str]) -> np.ndarray:
    """Last-layer hidden state at position 0 (<s>) for each text, no dropout."""
    model.eval()
    out = []
    for i in range(0, len(texts), 64):
        ids = [e.ids for e in tok.encode_batch(texts[i:i + 64])]
        x = torch.full((len(ids), max(map(len, ids))), model.config.pad_token_id)
        for r, e in enumerate(ids):
            x[r, :len(e)] = torch.tensor(e)
        with torch.no_grad():
            h = model.roberta(input_ids=x, attention_mask=(x != model.config.pad_token_id).long()).last_hidden_state
        out.append(h[:, 0].float().numpy())
    return np.concatenate(out)


def collapse_scores(states: np.ndarray) -> dict[str, float]:
    unit = states / np.linalg.norm(states, axis=1, keepdims=True)
    sim = unit @ unit.T
    n = len(states)
    return {"cos": float((sim.sum() - n) / (n * (n - 1))),
            "spread": float(states.std(0).sum() / np.linalg.norm(states, axis=1).mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+", help="pretraining checkpoint folders")
    ap.add_argument("-n", type=int, default=512, help="SST-2 validation sentences to compare (default 512)")
    ap.add_argument("--json", help="also write the scores here")
    args = ap.parse_args()

    from sklearn.linear_model import LogisticRegression
    from tokenizers import Tokenizer
    from transformers import AutoConfig, AutoModelForMaskedLM
    from transformers.utils import logging as hf_logging

    from ablate.tasks import TASKS
    from ablate.tasks.data import load_split

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    task = TASKS.get("sst2")
    train = load_split(task, "train").shuffle(seed=0).select(range(2000))
    val = load_split(task, "validation")
    rows = []
    seen_random: set[str] = set()
    for ck in map(Path, args.checkpoints):
        spec = json.loads((ck.parent / "spec.json").read_text())
        label = f"{spec['labels'].get('variant')}/seed{spec['labels'].get('seed')}"
        tok = Tokenizer.from_file(str(find_tokenizer(ck)))
        tok.enable_truncation(126)
        config = AutoConfig.from_pretrained(str(ck))
        models = [(label, AutoModelForMaskedLM.from_pretrained(str(ck)))]
        if config.to_json_string() not in seen_random:  # one random-init reference per architecture
            seen_random.add(config.to_json_string())
            models.append(("random init", random_init(config)))
        for name, model in models:
            a = first_states(model, tok, list(train["sentence"]))
            b = first_states(model, tok, list(val["sentence"]))  # the first n also give the collapse scores
            row = {"checkpoint": str(ck) if name != "random init" else None, "model": name,
                   **collapse_scores(b[:args.n])}
            row["probe"] = float(LogisticRegression(max_iter=3000).fit(a, train["label"]).score(b, val["label"]))
            row["weight_norm"] = float(torch.sqrt(sum((p.detach().float() ** 2).sum() for p in model.parameters())))
            print(f"{name:>16}  cos(<s>) {row['cos']:.4f}  spread(<s>) {row['spread']:.4f}  "
                  f"probe(<s>) {row['probe']:.1%}  weight norm {row['weight_norm']:.1f}", flush=True)
            rows.append(row)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
