"""Command line: read a meter, run the simulator, or probe a port; no Home Assistant needed."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from typing import Any

from nesmeter.cli.cli_client import client_from_args
from nesmeter.client.client import TRANSPORTS, MeterClient, probe_transport
from nesmeter.client.recording import record_reading
from nesmeter.errors import AuthenticationError, MeterError, TlsRequiredError
from nesmeter.keys import KEY_FORMATS, MeterKey
from nesmeter.link import trace
from nesmeter.sim.sim_variants import VARIANTS
from nesmeter.sim.simulator import Faults, SimulatedMeter
from nesmeter.sim.tls_server import TlsSimulatedMeter

ALERT_SCHEDULED_READ = 0x01  # ET13 Alert Flags bit 0, the condition --faults alerts announces


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nesmeter", description="Read NES/Echelon (OSGP) meters over MEP or IR.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging (the key is never logged)")
    sub = parser.add_subparsers(dest="command", required=True)

    read = sub.add_parser("read", help="print one reading")
    read.add_argument("--transport", choices=TRANSPORTS, required=True)
    read.add_argument("--port", required=True, help="device path, socket://host:port or rfc2217://host:port")
    read.add_argument(
        "--key", required=True, help="the utility's key (20 ASCII characters, 40 hex digits or decimal form)"
    )
    read.add_argument("--key-format", choices=KEY_FORMATS, default="auto")
    read.add_argument("--encrypt", action="store_true", help="MEP: RC4-encrypt requests")
    read.add_argument("--tls", action="store_true", help="MEP: TLS mode (meters configured to require TLS)")
    read.add_argument(
        "--key-id", choices=("mbk", "mak"), help="MEP TLS: which meter key --key is (default mbk, the basic key)"
    )
    read.add_argument("--enable-line", choices=("rts", "dtr", "none"), default="rts", help="MEP ENABLE line")
    read.add_argument("--json", action="store_true", help="one JSON object")
    read.add_argument("--trace", metavar="FILE", help="also write a trace of the session to FILE (key material masked)")

    history = sub.add_parser("history", help="print the load profile since a time", parents=[read], add_help=False)
    history.add_argument("--since", required=True, help="ISO 8601 time (UTC if no offset given)")

    events = sub.add_parser("events", help="print the event log, oldest first", parents=[read], add_help=False)
    events.add_argument("--after-sequence", type=int, help="only entries after this sequence number")

    sub.add_parser(
        "billing", help="print tariff, tiers, demands and the newest self-read", parents=[read], add_help=False
    )
    sub.add_parser(
        "power-quality", help="print power quality (ET09) and the disconnect state", parents=[read], add_help=False
    )

    sim = sub.add_parser("simulate", help="serve a simulated meter until stopped")
    sim.add_argument("--transport", choices=TRANSPORTS, help="required unless --replay gives it")
    sim.add_argument("--listen", default="tcp://127.0.0.1:0", help="tcp://127.0.0.1:PORT or pty")
    sim.add_argument("--key", required=True)
    sim.add_argument("--key-format", choices=KEY_FORMATS, default="auto")
    sim.add_argument("--serial", default="5712345678", help="utility serial number (ET03)")
    sim.add_argument(
        "--faults",
        default="",
        help="e.g. drop=0.01,corrupt=0.01,alerts,seed=1 (alerts: 00 00 markers and a scheduled read request in ET13)",
    )
    sim.add_argument("--pace", action="store_true", help="9600-baud wire timing")
    sim.add_argument("--history-days", type=int, default=7, help="days of load profile the meter holds")
    sim.add_argument("--tls", action="store_true", help="MEP: a meter that requires TLS (refuses plain and RC4)")
    sim.add_argument("--mak", help="MEP TLS: the meter's advanced key (MAK), for reads with --key-id mak")
    sim.add_argument(
        "--variant",
        default="",
        help="comma-separated meter variants: " + ", ".join(f"{name} ({what})" for name, what in VARIANTS.items()),
    )

    sim.add_argument(
        "--event",
        action="append",
        default=[],
        metavar="NAME[=ARG][@SECONDS]",
        help="log an event (e.g. cover_removed, voltage_sag=829@30) SECONDS after the start, without =ARG "
        "with the event's typical argument; repeatable",
    )
    sim.add_argument("--replay", metavar="FILE", help="serve the meter a trace shows (read --trace), signed with --key")

    probe = sub.add_parser("probe", help="tell which transport answers on a port")
    probe.add_argument("--port", required=True)
    return parser


async def _read(args: argparse.Namespace) -> int:
    client = client_from_args(args)
    if args.trace:
        return await _read_traced(client, args)
    async with client:
        identity = await client.identify()
        snapshot = await client.read_snapshot()
    _print_reading(args, identity.as_dict(), snapshot.as_dict())
    return 0


async def _read_traced(client: MeterClient, args: argparse.Namespace) -> int:
    doc = await record_reading(client)
    trace.save(args.trace, doc)
    print(f"trace written to {args.trace}", file=sys.stderr)
    if "error" in doc:
        print(f"error: {doc['error']}", file=sys.stderr)
        return 3 if doc["error"].startswith(AuthenticationError.__name__) else 1
    result = doc["result"]
    _print_reading(args, result["identity"], result["snapshot"])
    return 0


def _print_reading(args: argparse.Namespace, identity: dict[str, Any], snapshot: dict[str, Any]) -> None:
    result: dict[str, Any] = {
        "utility_serial": identity["utility_serial"],
        "manufacturer": identity["manufacturer"],
        "model": identity["model"],
        "firmware": identity["firmware_version"],
        **snapshot,
    }
    if args.json:
        print(json.dumps(result))
    else:
        width = max(map(len, result))
        for name, value in result.items():
            if value is not None and value != []:
                print(f"{name:<{width}}  {value}")


async def _history(args: argparse.Namespace) -> int:
    from nesmeter.cli.load_profile_cli import history

    return await history(args)


async def _events(args: argparse.Namespace) -> int:
    from nesmeter.cli.events_cli import events

    return await events(args)


async def _billing(args: argparse.Namespace) -> int:
    from nesmeter.cli.billing_cli import billing

    return await billing(args)


async def _power_quality(args: argparse.Namespace) -> int:
    from nesmeter.cli.power_quality_cli import power_quality

    return await power_quality(args)


async def _simulate(args: argparse.Namespace) -> int:
    from nesmeter.cli.events_cli import parse_event
    from nesmeter.sim.sim_image import MeterImage

    for text in args.event:
        parse_event(text)  # refuse an unknown event before serving

    meter: SimulatedMeter
    if args.replay:
        meter = _replayed(args)
    elif args.transport is None:
        print("--transport is required (or --replay FILE)", file=sys.stderr)
        return 2
    elif (args.tls or args.mak) and args.transport != "mep":
        print("--tls and --mak are MEP options: the optical port has no TLS", file=sys.stderr)
        return 2
    elif args.mak and not args.tls:
        print("--mak needs --tls", file=sys.stderr)
        return 2
    else:
        key = MeterKey.parse(args.key, args.key_format)
        image = MeterImage(utility_serial=args.serial, history_days=args.history_days)
        faults = Faults.parse(args.faults)
        meter = (
            TlsSimulatedMeter(
                key,
                mak=MeterKey.parse(args.mak, args.key_format) if args.mak else None,
                image=image,
                faults=faults,
                pace=args.pace,
                variants=args.variant,
            )
            if args.tls
            else SimulatedMeter(key, image=image, faults=faults, pace=args.pace, variants=args.variant)
        )
        if faults.alerts and not meter.image.alert_flags:
            # A meter repeats its alert markers because a condition is pending, and says which
            # in its ET13 Alert Flags: the client reads them after a marker (MEP guide p.17-18).
            meter.image.set_alert_flags(ALERT_SCHEDULED_READ)
    if args.listen == "pty":
        server = await meter.serve_pty(args.transport)
    elif args.listen.startswith("tcp://"):
        host, _, port = args.listen[len("tcp://") :].rpartition(":")
        if host not in ("127.0.0.1", "localhost"):
            print("the simulator only listens on 127.0.0.1", file=sys.stderr)
            return 2
        server = await meter.serve_tcp(args.transport, "127.0.0.1", int(port or 0))
    else:
        print("--listen takes tcp://127.0.0.1:PORT or pty", file=sys.stderr)
        return 2
    print(f"simulated {args.transport}{' TLS' if args.tls else ''} meter at {server.url}", flush=True)
    injections = [asyncio.create_task(_inject(meter, text)) for text in args.event]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for task in injections:
        task.cancel()
    await server.close()
    return 0


async def _inject(meter: SimulatedMeter, text: str) -> None:
    from nesmeter.cli.events_cli import inject_later

    await inject_later(meter.image.events, text)


def _replayed(args: argparse.Namespace) -> SimulatedMeter:
    from nesmeter.sim.sim_replay import ReplayedMeter, analyse

    doc = trace.load(args.replay)
    if args.transport not in (None, doc["transport"]):
        raise ValueError(f"the trace is of the {doc['transport']} port, not {args.transport}")
    args.transport = doc["transport"]
    replay = analyse(doc)
    print(f"replaying {args.replay}: {json.dumps(replay.summary())}", flush=True)
    return ReplayedMeter(
        replay,
        MeterKey.parse(args.key, args.key_format),
        faults=Faults.parse(args.faults),
        pace=args.pace,
        variants=args.variant,
    )


async def _probe(args: argparse.Namespace) -> int:
    found = await probe_transport(args.port)
    print(found or "no meter answered (check wiring, ENABLE, probe alignment)")
    return 0 if found else 1


def main(argv: list[str] | None = None) -> int:
    """Run the ``nesmeter`` command line; returns the exit code (0 ok, 1 failed, 2 usage, 3 key)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    handler = {
        "read": _read,
        "history": _history,
        "events": _events,
        "billing": _billing,
        "power-quality": _power_quality,
        "simulate": _simulate,
        "probe": _probe,
    }[args.command]
    try:
        return asyncio.run(handler(args))
    except AuthenticationError as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    except TlsRequiredError as err:
        print(f"error: {err}\nhint: read with --tls (and --key-id mak if the key is the MAK)", file=sys.stderr)
        return 1
    except (MeterError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
