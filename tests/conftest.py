"""Shared fixtures: the real data root (../shared/data unless ABLATE_DATA_DIR says otherwise) and a tiny corpus."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("ABLATE_DATA_DIR", str(DEFAULT_DATA))
for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(var, "1")

WORDS = ("the cat dog river stone house light water tree bird song king queen road hill field sun "
         "moon star night day city ship sea wind fire green old new small great").split()


def _sentence(rng) -> str:
    n = int(rng.integers(4, 14))
    words = [WORDS[int(i)] for i in rng.integers(0, len(WORDS), n)]
    return " ".join(words).capitalize() + "."


def make_docs(n_docs: int, seed: int = 0) -> list[str]:
    import numpy as np

    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(n_docs):
        paras = [" ".join(_sentence(rng) for _ in range(int(rng.integers(1, 5)))) for _ in range(int(rng.integers(1, 4)))]
        docs.append("\n\n".join(paras))
    return docs


@pytest.fixture
def tiny_data_root(tmp_path, monkeypatch) -> Path:
    """A data root with a synthetic corpus (train/validation) for fast unit tests."""
    root = write_tiny_data(tmp_path / "data")
    monkeypatch.setenv("ABLATE_DATA_DIR", str(root))
    return root


def write_tiny_data(root: Path) -> Path:
    """Write the synthetic corpus and an SST-2 look-alike under root (a data root); return root."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    (root / "corpus").mkdir(parents=True)
    for split, n, seed in (("train-00000-of-00001", 300, 0), ("validation", 40, 1)):
        docs = make_docs(n, seed)
        table = pa.table({"doc_id": [f"d{split}{i}" for i in range(n)], "source": ["wiki"] * n,
                          "title": [f"t{i}" for i in range(n)], "text": docs})
        pq.write_table(table, root / "corpus" / f"{split}.parquet")
    rng = np.random.default_rng(2)
    for split, n in (("train", 200), ("validation", 60)):
        labels = rng.integers(0, 2, n)
        sents = [_sentence(rng)[:-1] + (" good." if y else " bad.") for y in labels]
        (root / "glue" / "sst2").mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"sentence": sents, "label": labels.astype("int64"), "idx": np.arange(n)}),
                       root / "glue" / "sst2" / f"{split}.parquet")
    return root


def real_data_available() -> bool:
    return (Path(os.environ["ABLATE_DATA_DIR"]) / "corpus").is_dir()


needs_real_data = pytest.mark.skipif(not real_data_available(), reason="ABLATE_DATA_DIR has no real data")
