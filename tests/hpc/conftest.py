"""Fixtures of tests/hpc (defined in slurm_cluster.py, which the tests also import helpers from)."""

from slurm_cluster import server, slurm, small_t1  # noqa: F401
