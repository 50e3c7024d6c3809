"""``scripts/reliability``: the fault matrix, the soak and the long fuzz run (README "Reliability")."""
