"""Stopping a sweep on Ctrl-C or SIGTERM at a safe point.

The signal handler only notes the signal. Raising from a handler would put the exception at whatever bytecode the
main thread was running, which may be one whose exceptions Python drops: a handler run inside ``logging``'s
at-fork hook (called by ``subprocess.Popen`` when it starts a run) raised into ``_releaseLock``, the exception was
"ignored", and the sweep went on as if nothing had happened. The runner and the backends ask
:meth:`StopRequest.requested` in their waiting loops instead (at least twice a second), stop the running runs
politely, and raise :class:`SweepInterrupted` from there.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any

__all__ = ["StopRequest", "SweepInterrupted"]


class SweepInterrupted(KeyboardInterrupt):
    """The sweep was stopped (Ctrl-C or SIGTERM); rerun the same command to continue."""


class StopRequest:
    """Whether Ctrl-C or SIGTERM asked the sweep to stop; set by the handlers :meth:`installed` puts in place."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._held: list[int] = []

    def requested(self) -> bool:
        return self.signum is not None

    def request(self, signum: int) -> None:
        """Ask the sweep to stop (what the signal handlers do)."""
        self.signum = signum

    def check(self) -> None:
        """Raise :class:`SweepInterrupted` when a stop was asked for."""
        if self.signum is not None:
            raise SweepInterrupted(f"signal {self.signum}")

    def _handle(self, signum: int, frame: Any) -> None:
        self.request(signum)  # nothing else: see the module docstring

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Handle SIGTERM, and SIGINT unless it is ignored (a background job of a shell script keeps it ignored),
        for the time of the ``with`` block; the previous handlers come back after it. Outside the main thread no
        handler can be set, and signals are left alone."""
        previous: dict[int, Any] = {}
        try:
            previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._handle)
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread
            pass
        self._held = list(previous)
        try:
            yield self
        finally:
            self._held = []
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def reclaim(self) -> None:
        """Put the handlers back in place after a library replaced them (``ray.init`` sets its own SIGTERM
        handler, which exits at whatever bytecode the signal lands)."""
        for signum in self._held:
            signal.signal(signum, self._handle)
