"""bin/sweep: grids of bin/train runs, locally or on Slurm, and their reports."""
