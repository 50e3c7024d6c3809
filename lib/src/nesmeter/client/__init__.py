"""The MeterClient facade, its read planning and the readers of the longer tables.

Uses the wire protocols below and the decoders in ``nesmeter.tables``; never the simulator or the CLI.
"""
