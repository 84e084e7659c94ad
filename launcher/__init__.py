"""launcher: one command from a Hydra config to a chain of containerized Slurm stage jobs."""
