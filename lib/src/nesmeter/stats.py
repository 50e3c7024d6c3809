"""Counters and the last raw frames, kept by the sessions for diagnostics."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
import time
from typing import Any

FRAME_LOG_SIZE = 24


@dataclass(slots=True)
class LinkStats:
    """What happened on the line since the client was created."""

    frames_sent: int = 0
    frames_received: int = 0
    retries: int = 0
    timeouts: int = 0
    alert_markers: int = 0
    sequence_resyncs: int = 0
    session_starts: int = 0
    enable_resets: int = 0
    echoes: int = 0  # our own bytes handed back by an echoing IR head, dropped
    errors: Counter[str] = field(default_factory=Counter)
    last_error: str | None = None

    def error(self, name: str) -> None:
        """Count an error by name and remember it as the last one."""
        self.errors[name] += 1
        self.last_error = name

    def as_dict(self) -> dict[str, Any]:
        """Return the counters as plain JSON types (diagnostics, traces)."""
        return {
            "frames_sent": self.frames_sent,
            "frames_received": self.frames_received,
            "retries": self.retries,
            "timeouts": self.timeouts,
            "alert_markers": self.alert_markers,
            "sequence_resyncs": self.sequence_resyncs,
            "session_starts": self.session_starts,
            "enable_resets": self.enable_resets,
            "echoes": self.echoes,
            "errors": dict(self.errors),
            "last_error": self.last_error,
        }


class FrameLog:
    """A ring of the last frames in hex; callers pass frames already masked."""

    def __init__(self, size: int = FRAME_LOG_SIZE) -> None:
        """Keep the newest ``size`` frames."""
        self._frames: deque[tuple[float, str, str]] = deque(maxlen=size)

    def add(self, direction: str, frame: bytes) -> None:
        """Record a frame (already masked by the session) with the time."""
        self._frames.append((time.time(), direction, frame.hex()))

    def clear(self) -> None:
        """Forget the frames."""
        self._frames.clear()

    def as_list(self) -> list[dict[str, Any]]:
        """Return the frames as plain JSON types, oldest first."""
        return [{"time": stamp, "direction": direction, "hex": data} for stamp, direction, data in self._frames]
