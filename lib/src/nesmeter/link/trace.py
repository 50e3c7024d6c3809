"""Session traces: a timestamped transcript of a conversation with a meter, safe to publish.

A trace is how a real meter's behaviour enters the project: ``scripts/meter read ...
--trace FILE`` writes one, a user attaches it to an issue, and ``scripts/meter simulate
--replay FILE`` (``sim_replay.py``) serves a meter built from it, so it can become a
regression test (``tests/traces/``).

Format: one JSON document (UTF-8), ``"format": "nes-meter-trace"``, ``"version": 1``::

    {
      "format": "nes-meter-trace", "version": 1,
      "recorded": "2026-05-01T12:00:00.123+00:00",   # UTC, when tracing started
      "library": "nes_meter 0.1.0",
      "transport": "mep" | "ir",
      "port": "serial" | "socket" | "rfc2217",       # the kind of port only, no path or address
      "link": {...},      # MEP: encrypt, response_timeout; IR: asked and negotiated packet size/count
      "masked": "...",    # what was masked, in words (MASKED below)
      "frames": [         # every frame both ways, in order
        {"t": 0.0123, "dir": "tx" | "rx", "hex": "...",
         "masked": "password" | "digest" | "body",   # only where bytes were replaced by ff
         "plaintext": true,                          # MEP with RC4: the body is shown decrypted
         "truncated": true},                         # hand-made traces: only a prefix is known
        ...
      ],
      "frames_dropped": 0,   # frames that fell out of a bounded trace (oldest first)
      "stats": {...},        # the client's link counters (retries, timeouts, echoes, ...)
      "result": {"identity": {...}, "snapshot": {...}},   # what the client decoded, if it got that far
      "error": "...",        # or the error that ended the reading
      "fill": {"21": "hex", ...},   # hand-made traces only: tables the capture lacks (see "notes")
      "notes": ["..."]
    }

``t`` is seconds since the start of the trace (monotonic clock); ``hex`` is the frame:

* IR (optical port): the C12.18 link frame exactly as on the wire (``EE ... CRC``),
  except the Security request, whose 20 password bytes *and* CRC (computed over the
  password) are replaced by ``ff`` (``"masked": "password"``). ACK/NAK bytes and echoes of
  an echoing probe are not frames (echoes are counted in ``stats``).
* MEP: ``LEN | body | digest``. The 8-byte digest of every request and reply is computed
  with the key, so it is always replaced by ``ff`` (``"masked": "digest"``). With RC4 the
  body on the wire is ciphertext made with the key: the trace holds the plaintext body
  instead (same length, ``"plaintext": true``); a reply that matches no request cannot
  be decrypted and has its body replaced by ``ff`` too (``"masked": "body"``).

Nothing else is derived from the key: sequence numbers are random, table data, Identify,
Negotiate and Logon are the same with any key. A trace does hold the meter's serial
numbers (BT01, ET03) and readings.
"""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime
import json
import logging
from pathlib import Path
import time
from typing import TYPE_CHECKING, Any, Final

from nesmeter.c1218 import framing as c1218
from nesmeter.errors import FrameError
from nesmeter.mep import framing as mep

if TYPE_CHECKING:
    from nesmeter.c1218.session import C1218Session
    from nesmeter.client.client import MeterClient, MeterIdentity
    from nesmeter.mep.session import MepSession
    from nesmeter.mep.tls_session import MepTlsSession
    from nesmeter.tables.snapshot import MeterSnapshot

_LOGGER = logging.getLogger(__name__)

FORMAT: Final = "nes-meter-trace"
VERSION: Final = 1
MASK: Final = 0xFF
MASKED: Final = (
    "IR: the Security request's 20 password bytes and its CRC; "
    "MEP: the 8-byte digest of every request and reply, and with RC4 the encrypted bodies "
    "(shown decrypted instead; a reply that cannot be decrypted is masked whole). "
    "Masked bytes read ff."
)


def library_version() -> str:
    """``nes_meter <version>`` from the integration's manifest, when it ships with it."""
    manifest = Path(__file__).resolve().parent.parent / "manifest.json"
    try:
        return f"nes_meter {json.loads(manifest.read_text())['version']}"
    except (OSError, ValueError, KeyError):
        return "nes_meter (version unknown)"


def port_kind(port: str) -> str:
    """The kind of port, never its path or network address."""
    scheme, sep, _ = port.partition("://")
    return scheme if sep else "serial"


class Trace:
    """Records frames with the key material masked; sessions call it only when tracing.

    ``max_frames`` bounds the memory of a trace left running (the oldest frames go).
    """

    def __init__(self, transport: str, *, encrypt: bool = False, port: str = "", max_frames: int | None = None) -> None:
        self.transport = transport
        self.encrypt = encrypt
        self.port = port_kind(port) if port else "serial"
        self.started = datetime.now(UTC)
        self.link: dict[str, Any] = {"encrypt": encrypt} if transport == "mep" else {}
        self._t0 = time.monotonic()
        self._frames: deque[dict[str, Any]] = deque(maxlen=max_frames)
        self._count = 0
        self._last_service: int | None = None  # IR: the service of the last request sent

    def attach(self, session: MepSession | MepTlsSession | C1218Session) -> None:
        """Start receiving the session's frames; note its link settings."""
        from nesmeter.mep.session import MepSession
        from nesmeter.mep.tls_session import MepTlsSession

        if isinstance(session, MepTlsSession):
            self.link.update(tls=True, response_timeout=session.timing.response_timeout)
        elif isinstance(session, MepSession):
            self.encrypt = session.encrypted
            self.link.update(encrypt=session.encrypted, response_timeout=session.timing.response_timeout)
        else:
            self.link.update(asked_packet_size=session.timing.packet_size, asked_packets=session.timing.packets)
        session.trace = self

    def detach(self, session: MepSession | MepTlsSession | C1218Session) -> None:
        if session.trace is self:
            session.trace = None

    def _add(self, direction: str, data: bytes, **flags: Any) -> None:
        entry: dict[str, Any] = {"t": round(time.monotonic() - self._t0, 4), "dir": direction, "hex": data.hex()}
        entry.update((name, value) for name, value in flags.items() if value)
        self._frames.append(entry)
        self._count += 1

    # ---- called by the sessions ----

    def ir_frame(self, direction: str, frame: bytes, *, masked: bool = False) -> None:
        """A C12.18 frame; ``masked``: a Security request, password and CRC hidden."""
        if masked:
            keep = c1218.HEADER_SIZE + 1  # header and service code
            frame = frame[:keep] + bytes([MASK]) * (len(frame) - keep)
        self._add(direction, frame, masked="password" if masked else None)
        if direction == "tx":
            self._last_service = frame[c1218.HEADER_SIZE] if len(frame) > c1218.OVERHEAD else None
        elif self._last_service in (c1218.Service.NEGOTIATE, c1218.Service.NEGOTIATE_BAUD):
            self._note_negotiated(frame)

    def _note_negotiated(self, frame: bytes) -> None:
        """What the session makes of the Negotiate answer (the same function it uses)."""
        try:
            packet = c1218.decode_packet(frame)
        except FrameError:
            return
        if packet.data[:1] == b"\x00" and not packet.multi:
            asked = c1218.NegotiatedLink(self.link.get("asked_packet_size", 64), self.link.get("asked_packets", 1))
            link = c1218.parse_negotiate(packet.data, asked)
            self.link.update(packet_size=link.packet_size, packets=link.packets)

    def mep_request(self, message: bytes) -> None:
        """A MEP request: its plaintext ``APDU | SEQ``, the digest masked."""
        self._add("tx", mep.frame(message, bytes([MASK]) * mep.DIGEST_SIZE), masked="digest", plaintext=self.encrypt)

    def mep_reply(self, frame: bytes, body: bytes | None) -> None:
        """A MEP reply as received (``LEN | ...``) and its plaintext body if known.

        ``body`` is the reply without its digest, decrypted under RC4; ``None`` when it
        could not be decrypted. Whatever follows the body (the digest) is masked.
        """
        header, payload = frame[:2], frame[2:]
        if body is None:
            self._add("rx", header + bytes([MASK]) * len(payload), masked="body")
            return
        tail = len(payload) - len(body)
        self._add(
            "rx",
            header + body + bytes([MASK]) * tail,
            masked="digest" if tail else None,
            plaintext=self.encrypt and bool(body),
        )

    def tls_read(self, apdu: bytes, data: bytes) -> None:
        """A read carried in MEP TLS mode, as the plaintext MEP exchange it stands for.

        The TLS records themselves are encrypted under keys derived from the meter key and
        are useless to a replay; the handshake is not recorded at all.
        """
        mask = bytes([MASK]) * mep.DIGEST_SIZE
        self._add("tx", mep.frame(apdu + bytes(mep.SEQUENCE_SIZE), mask), masked="digest", plaintext=True, tls=True)
        reply = b"\x00" + len(data).to_bytes(2, "big") + data
        self._add("rx", mep.frame(reply, mask), masked="digest", plaintext=True, tls=True)

    # ---- the document ----

    @property
    def frames(self) -> list[dict[str, Any]]:
        return list(self._frames)

    def document(
        self,
        *,
        stats: dict[str, Any] | None = None,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        notes: list[str] | None = None,
    ) -> dict[str, Any]:
        """The trace as a JSON-ready document (see the module docstring)."""
        doc: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "recorded": self.started.isoformat(timespec="milliseconds"),
            "library": library_version(),
            "transport": self.transport,
            "port": self.port,
            "link": dict(self.link),
            "masked": MASKED,
            "frames": self.frames,
            "frames_dropped": self._count - len(self._frames),
        }
        if stats is not None:
            doc["stats"] = stats
        if result is not None:
            doc["result"] = result
        if error is not None:
            doc["error"] = error
        if notes:
            doc["notes"] = notes
        return doc


def dumps(doc: dict[str, Any]) -> str:
    """The document as JSON text, one frame per line (readable, and diffs well)."""
    lines = ["{"]
    items = list(doc.items())
    for index, (name, value) in enumerate(items):
        comma = "," if index < len(items) - 1 else ""
        if name == "frames" and value:
            inner = ",\n".join("  " + json.dumps(frame, separators=(", ", ": ")) for frame in value)
            lines.append(f' "frames": [\n{inner}\n ]{comma}')
        else:
            lines.append(f" {json.dumps(name)}: {json.dumps(value, default=str)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def save(path: str | Path, doc: dict[str, Any]) -> None:
    Path(path).write_text(dumps(doc), encoding="utf-8")


def load(path: str | Path) -> dict[str, Any]:
    """Read a trace file; refuses anything that is not one."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{path} is not a nes-meter trace")
    if doc.get("version") != VERSION:
        raise ValueError(f"{path}: trace version {doc.get('version')!r}, this library reads {VERSION}")
    if doc.get("transport") not in ("mep", "ir"):
        raise ValueError(f"{path}: unknown transport {doc.get('transport')!r}")
    return doc


def reading(identity: MeterIdentity, snapshot: MeterSnapshot) -> dict[str, Any]:
    """The decoded values as a trace stores them (``result``)."""
    return json.loads(json.dumps({"identity": identity.as_dict(), "snapshot": snapshot.as_dict()}, default=str))  # type: ignore[no-any-return]


async def record_reading(client: MeterClient, *, notes: list[str] | None = None) -> dict[str, Any]:
    """Trace one complete reading from a fresh session and return the trace document.

    Closes the client first, so the trace covers the whole session start (Identify,
    Negotiate, Logon on IR) and every identification table; reopens it afterwards if it
    was open. A failed reading still gives a trace, with ``error`` set. The caller must
    make sure nothing else uses the client meanwhile (a poll would interleave).
    """
    was_open = client.is_open
    await client.close()
    trace = client.start_trace()
    result: dict[str, Any] | None = None
    error: str | None = None
    try:
        async with client:
            identity = await client.identify()
            snapshot = await client.read_snapshot()
        result = reading(identity, snapshot)
    except Exception as err:  # the trace is wanted most when the reading fails
        error = f"{type(err).__name__}: {err}"
    finally:
        client.stop_trace()
    doc = trace.document(stats=client.stats.as_dict(), result=result, error=error, notes=notes)
    if was_open:
        try:
            await client.open()
        except Exception as err:  # the next poll reopens it
            _LOGGER.debug("reopening after the trace: %s", err)
    return doc
