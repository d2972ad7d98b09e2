"""The special tokens every tokenizer of ablate shares, with RoBERTa's ids: <s>=0, <pad>=1, </s>=2, <unk>=3, <mask>=4.

Fixed ids let formats, masking, the model and the tasks refer to them without loading a tokenizer.
"""

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
BOS, PAD, EOS, UNK, MASK = range(5)
NUM_SPECIAL = len(SPECIALS)
