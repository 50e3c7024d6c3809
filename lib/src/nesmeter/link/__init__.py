"""Byte links to a meter (serial, socket, rfc2217 through serialx) and traces of the bytes that crossed them.

The bottom of the wire stack: nothing here knows a protocol beyond the bytes it is handed.
"""
