"""ablate: reproduce the RoBERTa paper's pretraining comparisons on small models.

Importing this package must stay cheap: no torch, transformers or pandas here,
so that `ablate --help` starts in well under a second.
"""

import os

__version__ = "0.1.0"

# oneDNN (behind torch's CPU kernels) keeps a compiled primitive per operation and shape, 1024 of them by
# default. The masked-only LM head and the unpadded batches change shapes at every step, so with the
# default the cache grew by about 14 MB a step, to 10.7 GB in one cell at 128 sequences a step. Eight
# entries keep memory flat at the same speed and the same losses (benchmarks/onednn_cache.py). Read by
# oneDNN when it first builds a primitive, so it is set here, before any torch work; a value the user
# sets wins.
ONEDNN_CACHE_CAPACITY = "8"
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", ONEDNN_CACHE_CAPACITY)
