"""A simulated meter: table image, variants, MEP/IR/TLS server sides and replay of traces.

Tests, demos and people without a meter at hand use it; nothing the client needs imports it.
"""
