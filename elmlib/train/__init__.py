"""Training mechanics shared by every stage: the resumable loop, derived seeds, devices, data parallelism."""
