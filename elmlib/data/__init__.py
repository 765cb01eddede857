"""Tasks, pretraining corpora, tokenization, fine-tuned task teachers and data files as tasks."""
