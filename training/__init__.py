"""Training: datasets, fine-tuning, evaluation and the retraining loop."""
