"""The search end to end (Algorithm 2): one config, preflight checks, the locked run folder, the five
stages, retraining, export and the command line."""
