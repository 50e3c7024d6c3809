"""The client every ``meter`` command that reads a meter builds from its common options."""

from __future__ import annotations

import argparse

from nesmeter.client.client import MeterClient
from nesmeter.keys import MeterKey
from nesmeter.mep.tls import KeyId


def client_from_args(args: argparse.Namespace) -> MeterClient:
    """Build the client for ``--transport/--port/--key`` and the security options (RC4, TLS)."""
    key = MeterKey.parse(args.key, args.key_format)
    if args.key_id and not args.tls:
        raise ValueError("--key-id applies to --tls reads only")
    return MeterClient(
        args.port,
        args.transport,
        key,
        encrypt=args.encrypt,
        tls=args.tls,
        tls_key_id=KeyId[(args.key_id or "mbk").upper()],
        enable_line=args.enable_line,
    )
