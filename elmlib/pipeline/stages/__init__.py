"""The stages of the ELM search (paper Algorithm 2), each a function of the run's `RunContext`:
`supernet` (1. pretraining with PCA-guided growth, 2. task fine-tuning), `search` (3. evolutionary
search, 4. CKA head search); stage 5 (retraining) is `elmlib.pipeline.retrain`."""
