"""ANSI C12.18 over the optical port: framing and the logon/security/read session.

Built on the byte links in ``nesmeter.link``; knows tables only as numbers and bytes.
"""
