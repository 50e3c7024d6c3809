"""Pure decoders of the C12.19 standard and NES extended tables: bytes in, typed values out.

No I/O here, so every decoder can be tested with vectors and fuzzed on its own.
"""
