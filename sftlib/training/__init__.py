"""Pretraining and fine-tuning: the loops, who acts, checkpoints."""
