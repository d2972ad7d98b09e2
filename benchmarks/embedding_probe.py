"""What has a pretrained checkpoint learned about words? Nearest neighbours and a group-similarity score.

A diagnostic for the scale sweep: an MLM that has left its early plateau puts words of one kind
(numbers, months, days, colours, family words) close together in its input embedding space. For
each checkpoint this prints the nearest neighbours of a few words and a score: the mean cosine
similarity of words within a group minus the mean across groups (0 means no structure; the same
architecture at random init is printed as the reference). With --linear-probe N it also fits a
logistic regression on frozen, mean-pooled features (input embeddings, last layer) of N SST-2 training
sentences and scores it on the validation set: how much sentiment the features carry before any
fine-tuning (needs ABLATE_DATA_DIR).

    python benchmarks/embedding_probe.py benchmarks/runs/sweep-h128-l2-20m/pretrain/*/checkpoint --linear-probe 8000
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

GROUPS = {
    "numbers": ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"],
    "months": ["January", "February", "March", "April", "May", "June", "July", "August", "September",
               "October", "November", "December"],
    "days": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
    "colours": ["red", "blue", "green", "yellow", "black", "white", "brown"],
    "family": ["father", "mother", "brother", "sister", "son", "daughter", "wife", "husband"],
    "sentiment+": ["good", "great", "best", "beautiful", "happy", "love"],
    "sentiment-": ["bad", "worst", "poor", "sad", "terrible", "hate"],
}
SHOW = ["good", "bad", "three", "film", "king", "March"]


def single_tokens(tok, words):
    """word -> its id, for words that are one token with a leading space (Ġword) in this vocabulary."""
    out = {}
    for w in words:
        ids = tok.encode(" " + w, add_special_tokens=False).ids
        if len(ids) == 1:
            out[w] = ids[0]
    return out


def group_score(emb: torch.Tensor, tok) -> tuple[float, dict[str, float]]:
    e = torch.nn.functional.normalize(emb - emb.mean(0), dim=1)
    groups = {g: list(single_tokens(tok, ws).values()) for g, ws in GROUPS.items()}
    groups = {g: ids for g, ids in groups.items() if len(ids) >= 3}
    within, per = [], {}
    for g, ids in groups.items():
        s = e[ids] @ e[ids].T
        n = len(ids)
        w = (s.sum() - n) / (n * (n - 1))
        per[g] = float(w)
        within.append(float(w))
    everything = [i for ids in groups.values() for i in ids]
    owner = [g for g, ids in groups.items() for _ in ids]
    s = e[everything] @ e[everything].T
    across = [float(s[a, b]) for a in range(len(everything)) for b in range(len(everything)) if owner[a] != owner[b]]
    return sum(within) / len(within) - sum(across) / len(across), per


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+", help="pretraining checkpoint folders (save_pretrained output)")
    ap.add_argument("--tokenizer", help="tokenizer.json (default: the checkpoint's run spec names it in results/_cache)")
    ap.add_argument("--linear-probe", type=int, default=0, metavar="N",
                    help="also fit a logistic regression on frozen features of N SST-2 sentences")
    ap.add_argument("--json", help="also write the scores here")
    args = ap.parse_args()

    from tokenizers import Tokenizer
    from transformers import AutoConfig, AutoModelForMaskedLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    rows = []
    for ck in map(Path, args.checkpoints):
        tok_path = Path(args.tokenizer) if args.tokenizer else find_tokenizer(ck)
        tok = Tokenizer.from_file(str(tok_path))
        vocab = {i: t for t, i in tok.get_vocab().items()}
        for label, model in (("pretrained", AutoModelForMaskedLM.from_pretrained(str(ck))),
                             ("random init", random_init(AutoConfig.from_pretrained(str(ck))))):
            emb = model.roberta.embeddings.word_embeddings.weight.detach().float()
            score, per = group_score(emb, tok)
            print(f"\n{ck} [{label}]  group score {score:+.3f}  " + "  ".join(f"{g} {v:+.2f}" for g, v in per.items()))
            e = torch.nn.functional.normalize(emb - emb.mean(0), dim=1)
            for w, i in single_tokens(tok, SHOW).items():
                near = (e @ e[i]).topk(7).indices.tolist()[1:]
                print(f"  {w:>8}: " + " ".join(vocab[j].replace("\u0120", "_") for j in near))
            row = {"checkpoint": str(ck), "init": label, "group_score": score, "groups": per}
            if args.linear_probe:
                row["sst2_linear_probe"] = linear_probe(model, tok, args.linear_probe)
                print("  SST-2 linear probe (validation accuracy): " +
                      "  ".join(f"{k} {v:.1%}" for k, v in row["sst2_linear_probe"].items()))
            rows.append(row)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


def linear_probe(model, tok, n: int) -> dict[str, float]:
    """Logistic regression on mean-pooled frozen features of n SST-2 training sentences -> validation accuracy."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from tokenizers import Tokenizer

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from ablate.tasks import TASKS
    from ablate.tasks.data import load_split

    task = TASKS.get("sst2")
    train, val = load_split(task, "train").shuffle(seed=0).select(range(n)), load_split(task, "validation")
    tok = Tokenizer.from_str(tok.to_str())
    tok.enable_truncation(model.config.max_position_embeddings - 2)
    model.eval()

    def pooled(texts) -> dict[str, np.ndarray]:
        out = {"embeddings": [], "last layer": []}
        for i in range(0, len(texts), 64):
            ids = [e.ids for e in tok.encode_batch(texts[i:i + 64])]
            x = torch.full((len(ids), max(map(len, ids))), model.config.pad_token_id)
            for r, e in enumerate(ids):
                x[r, :len(e)] = torch.tensor(e)
            m = (x != model.config.pad_token_id).float()
            with torch.no_grad():
                hs = model.roberta(input_ids=x, attention_mask=m.long(), output_hidden_states=True).hidden_states
            for name, h in (("embeddings", hs[0]), ("last layer", hs[-1])):
                out[name].append(((h * m[..., None]).sum(1) / m.sum(1, keepdim=True)).numpy())
        return {k: np.concatenate(v) for k, v in out.items()}

    a, b = pooled(list(train["sentence"])), pooled(list(val["sentence"]))
    return {k: float(LogisticRegression(max_iter=3000).fit(a[k], train["label"]).score(b[k], val["label"]))
            for k in a}


def random_init(config):
    from transformers import AutoModelForMaskedLM

    torch.manual_seed(0)
    return AutoModelForMaskedLM.from_config(config)


def find_tokenizer(ck: Path) -> Path:
    """The tokenizer a pretraining run used: the package's cache entry for the data settings in its spec."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from ablate.run.prepare import cache_for
    from ablate.study.spec import Config, DataSpec
    from ablate.store import Store

    data = json.loads((ck.parent / "spec.json").read_text())["identity"]["data"]
    path = cache_for(Store(ck.parents[3]), Config(data=DataSpec(**data))).tokenizer / "tokenizer.json"
    if not path.exists():
        sys.exit(f"no cached tokenizer for {ck} (looked for {path}); pass --tokenizer")
    return path


if __name__ == "__main__":
    main()
