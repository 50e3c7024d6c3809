"""Session traces: a timestamped transcript of a conversation with a meter, safe to publish.

A trace is how a real meter's behaviour enters the project: ``nesmeter read ...
--trace FILE`` writes one, a user attaches it to an issue, and ``nesmeter simulate
--replay FILE`` (``nesmeter.sim.sim_replay``) serves a meter built from it, so it can become a
regression test (``lib/tests/traces/``).

Format: one JSON document (UTF-8), ``"format": "nes-meter-trace"``, ``"version": 1``::

    {
      "format": "nes-meter-trace", "version": 1,
      "recorded": "2026-05-01T12:00:00.123+00:00",   # UTC, when tracing started
      "library": "nesmeter 0.1.0",
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
import importlib.metadata
import json
from pathlib import Path
import time
from typing import Any, Final, Protocol

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
    """``nesmeter <version>`` as installed, so a trace says which library recorded it."""
    try:
        return f"nesmeter {importlib.metadata.version('nesmeter')}"
    except importlib.metadata.PackageNotFoundError:
        return "nesmeter (version unknown)"


class Traced(Protocol):
    """A session a trace can follow: it hands its frames, already masked, to ``trace``.

    The session knows its framing, so it decides what to mask; the trace only stores
    bytes. ``trace_settings`` is what the trace notes about the link (timeouts, packet
    sizes, security), so a replay can rebuild it.
    """

    trace: Trace | None

    def trace_settings(self) -> dict[str, Any]:
        """Return the link settings a trace of this session records under ``link``."""


def port_kind(port: str) -> str:
    """Return the kind of port, never its path or network address."""
    scheme, sep, _ = port.partition("://")
    return scheme if sep else "serial"


class Trace:
    """Records the frames a session hands it (key material already masked); only while tracing.

    ``max_frames`` bounds the memory of a trace left running (the oldest frames go).
    """

    def __init__(self, transport: str, *, encrypt: bool = False, port: str = "", max_frames: int | None = None) -> None:
        """Start an empty trace of a ``transport`` conversation on a port of ``port``'s kind."""
        self.transport = transport
        self.encrypt = encrypt
        self.port = port_kind(port) if port else "serial"
        self.started = datetime.now(UTC)
        self.link: dict[str, Any] = {"encrypt": encrypt} if transport == "mep" else {}
        self._t0 = time.monotonic()
        self._frames: deque[dict[str, Any]] = deque(maxlen=max_frames)
        self._count = 0

    def attach(self, session: Traced) -> None:
        """Start receiving the session's frames; note its link settings."""
        settings = session.trace_settings()
        self.link.update(settings)
        session.trace = self

    def detach(self, session: Traced) -> None:
        """Stop receiving the session's frames (when this trace is the one it feeds)."""
        if session.trace is self:
            session.trace = None

    def record(self, direction: str, data: bytes, **flags: Any) -> None:
        """One frame, ``tx`` or ``rx``, with its flags (``masked``, ``plaintext``, ...; false ones left out).

        The caller has masked whatever the key made (see the module docstring).
        """
        entry: dict[str, Any] = {"t": round(time.monotonic() - self._t0, 4), "dir": direction, "hex": data.hex()}
        entry.update((name, value) for name, value in flags.items() if value)
        self._frames.append(entry)
        self._count += 1

    # ---- the document ----

    @property
    def frames(self) -> list[dict[str, Any]]:
        """The frames recorded so far (the newest ``max_frames`` of them), oldest first."""
        return list(self._frames)

    def document(
        self,
        *,
        stats: dict[str, Any] | None = None,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        notes: list[str] | None = None,
    ) -> dict[str, Any]:
        """Return the trace as a JSON-ready document (see the module docstring)."""
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
    """Return the document as JSON text, one frame per line (readable, and diffs well)."""
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
    """Write the document to ``path`` as :func:`dumps` lays it out."""
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
