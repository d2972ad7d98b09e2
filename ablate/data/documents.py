"""A corpus split -> its document texts, streamed from the Parquet files under the data root.

Input: <data root>/<corpus>/<split>-*.parquet (columns doc_id, source, title, text; paragraphs separated by a
blank line). Output: an iterator of document texts in the corpus's fixed file and row order.
"""

from __future__ import annotations

from typing import Iterable, Iterator

from ablate.paths import corpus_files


def iter_documents(corpus: str, split: str) -> Iterator[str]:
    """Document texts of a corpus split, in the corpus's fixed file and row order (streamed by `datasets`)."""
    import datasets  # lazy: ~2 s to import; validate and plan never read the corpus

    datasets.disable_progress_bars()
    files = [str(p) for p in corpus_files(corpus, split)]
    ds = datasets.load_dataset("parquet", data_files={split: files}, split=split, streaming=True)
    for row in ds.select_columns(["text"]):
        yield row["text"]


def first_documents(docs: Iterable[str], chars: int) -> Iterator[str]:
    """Whole documents from the start until `chars` characters are reached (the one that reaches it included):
    a held-out text that does not depend on any tokenizer."""
    total = 0
    for doc in docs:
        if total >= chars:
            return
        yield doc
        total += len(doc)
