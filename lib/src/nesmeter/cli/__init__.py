"""The ``nesmeter`` command line: read, probe, simulate, history, events, billing, power-quality, trace."""
