"""Reproducing the paper: experiment drivers (one run folder per table row), the schedule that builds
them, the paper's numbers, figures, the results report and the claims ledger."""
