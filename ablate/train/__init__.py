"""Training: the fast step (trainer), a pretraining cell (pretrain), its checkpoints (checkpoint), a fine-tune (finetune)."""
