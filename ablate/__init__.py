"""ablate: reproduce the RoBERTa paper's pretraining comparisons on small models.

Importing this package must stay cheap: no torch, transformers or pandas here,
so that `ablate --help` starts in well under a second.
"""

__version__ = "0.1.0"
