"""MEP, the meter's expansion port protocol: framing with digest and RC4, sessions, and MEP TLS.

Built on the byte links in ``nesmeter.link``; knows tables only as numbers and bytes.
"""
