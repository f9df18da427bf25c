"""The store's clock, as seen from here.

Callers stamp entries with ``ClockOffset.now()`` (local time corrected by
the measured offset to the store's clock) so that timestamps from machines
whose clocks disagree are comparable. The log's order never depends on it:
sequence numbers order the log; timestamps are data, used only where a rule
says so (a last-writer-wins register, say).

Precision: GCS and S3 give their time in the HTTP Date header, to the
second; the offset is the Date (taken as the middle of its second) minus
the middle of the request's round trip, so good to about half a second
plus half the round trip. A local clock within that error of the store's
is left as it is (offset 0): NTP keeps clocks far closer than a Date
header can tell, and processes of one machine then stamp alike.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta

from mlflow_bucket.storage import ObjectStore

log = logging.getLogger(__name__)

# After a failed first measurement, try again in the background this often.
_RETRY_FAILED = 60.0


class ClockOffset:
    """``store.server_time() - local time``, measured once and refreshed occasionally.

    Never blocks a caller for long on the network: the first use waits at
    most ``timeout`` seconds for a measurement (using no correction if it
    is not in by then), later refreshes happen in the background.
    """

    def __init__(self, store: ObjectStore, *, refresh: float = 600.0, timeout: float = 2.0):
        self.store = store
        self.refresh_every = refresh
        self.timeout = timeout
        self._lock = threading.Lock()
        self._offset: float | None = None
        self._measured_at: float | None = None  # monotonic
        self._running: threading.Thread | None = None
        self._tried_at: float | None = None  # monotonic
        self._used = False  # offset() was called

    def measure(self) -> float:
        """Measure now (one request); return the offset in seconds."""
        t0 = time.time()
        server = self.store.server_time()
        t1 = time.time()
        stamp = server.timestamp()
        error = (t1 - t0) / 2
        if server.microsecond == 0:
            # A Date header truncates to the second: its middle is the best guess.
            stamp += 0.5
            error += 0.5
        offset = stamp - (t0 + t1) / 2
        if abs(offset) <= error:
            # The local clock agrees with the store's as far as this can tell:
            # keep it. "Correcting" a right clock by up to a second would make
            # two processes of one machine order their writes wrongly.
            offset = 0.0
        with self._lock:
            self._offset = offset
            self._measured_at = self._tried_at = time.monotonic()
        if abs(offset) > 5:
            log.info("local clock is %.1f s off the clock of %s", -offset, self.store.uri)
        return offset

    def _measure_quietly(self) -> None:
        try:
            self.measure()
        except Exception as exc:  # a failed refresh keeps the old offset
            log.debug("clock offset of %s not measured: %s", self.store.uri, exc)
        finally:
            with self._lock:
                self._running = None

    def _start(self) -> threading.Thread:
        with self._lock:
            if self._running is None:
                self._running = threading.Thread(
                    target=self._measure_quietly, name="mlflow-bucket-clock", daemon=True
                )
                self._running.start()
            return self._running

    def start(self) -> None:
        """Measure in the background now, so that the first stamp need not wait for it.

        A writer that opens a store and stamps its first entry only later
        (maybe while the store is unreachable) then stamps with the store's
        time, not its own.
        """
        with self._lock:
            if self._tried_at is not None:
                return
            self._tried_at = time.monotonic()
        self._start()

    def offset(self) -> float:
        """The current offset in seconds (0.0 until a measurement succeeds)."""
        now = time.monotonic()
        with self._lock:
            offset, at, tried = self._offset, self._measured_at, self._tried_at
            first = not self._used
            self._used = True
            retry = offset is None and tried is not None and now - tried > _RETRY_FAILED
            stale = offset is not None and at is not None and now - at > self.refresh_every
            if tried is None or retry:
                self._tried_at = now
        if first and offset is None:
            # Only the very first use waits (for the measurement start()
            # began, or a new one), and only for `timeout`.
            self._start().join(self.timeout)
            with self._lock:
                return self._offset or 0.0
        if retry or stale:
            self._start()
        return offset or 0.0

    def now(self) -> datetime:
        """The store's idea of now (UTC)."""
        return datetime.now(UTC) + timedelta(seconds=self.offset())

    def now_ms(self) -> int:
        """The store's idea of now in milliseconds since the epoch (MLflow's unit)."""
        return int((time.time() + self.offset()) * 1000)
