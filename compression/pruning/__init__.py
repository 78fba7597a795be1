"""Gradual pruning during fine-tuning: schedules, the Optimal BERT Surgeon scorer and masks."""
