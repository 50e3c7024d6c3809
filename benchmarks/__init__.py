"""``scripts/bench``: poll-cycle latency against the wire limit, CPU, memory and scale."""
