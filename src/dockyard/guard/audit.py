"""One JSON line per request, and Prometheus counters for the same events.

The metrics exposition is the plain text format written by hand (a few counters and one
histogram): prometheus-client would add a dependency and a thread for what is forty lines.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO


@dataclass(slots=True)
class Record:
    """What happened to one request; ``verdict`` is allow, deny, warn (denied but forwarded
    in warn or audit mode) or error (malformed input)."""

    client: str
    owner: str
    method: str
    path: str
    verdict: str = "allow"
    rule: str = ""
    reason: str = ""
    status: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    started: float = field(default_factory=time.time)
    latency_ms: float = 0.0

    def line(self) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.started))
        fields = {name: getattr(self, name) for name in _FIELDS}
        return json.dumps({"time": f"{stamp}.{int(self.started % 1 * 1000):03d}Z", **fields})


_FIELDS = tuple(name for name in Record.__dataclass_fields__ if name != "started")


_BUCKETS = (0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 1000, 10000)


class Metrics:
    """Counters by verdict and rule, bytes relayed, and a latency histogram (ms)."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str]] = Counter()
        self.bytes: Counter[str] = Counter()
        self.buckets = [0] * len(_BUCKETS)
        self.latency_sum = 0.0
        self.count = 0

    def observe(self, record: Record) -> None:
        self.requests[(record.verdict, record.rule)] += 1
        self.bytes["in"] += record.bytes_in
        self.bytes["out"] += record.bytes_out
        self.count += 1
        self.latency_sum += record.latency_ms
        index = bisect.bisect_left(_BUCKETS, record.latency_ms)
        if index < len(_BUCKETS):
            self.buckets[index] += 1  # (made cumulative when exposed)

    def exposition(self) -> str:
        lines = ["# TYPE dockyard_guard_requests_total counter"]
        for (verdict, rule), count in sorted(self.requests.items()):
            lines.append(
                f'dockyard_guard_requests_total{{verdict="{verdict}",rule="{rule}"}} {count}'
            )
        lines.append("# TYPE dockyard_guard_bytes_total counter")
        for direction, count in sorted(self.bytes.items()):
            lines.append(f'dockyard_guard_bytes_total{{direction="{direction}"}} {count}')
        lines.append("# TYPE dockyard_guard_latency_ms histogram")
        below = 0
        for bound, count in zip(_BUCKETS, self.buckets, strict=True):
            below += count
            lines.append(f'dockyard_guard_latency_ms_bucket{{le="{bound}"}} {below}')
        lines.append(f'dockyard_guard_latency_ms_bucket{{le="+Inf"}} {self.count}')
        lines.append(f"dockyard_guard_latency_ms_sum {self.latency_sum:.3f}")
        lines.append(f"dockyard_guard_latency_ms_count {self.count}")
        return "\n".join(lines) + "\n"

    async def serve(self, port: int, host: str = "127.0.0.1") -> asyncio.Server:
        """``GET /metrics`` on ``host:port``; every path answers the same page."""

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                body = self.exposition().encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                    b"Content-Length: %d\r\nConnection: close\r\n\r\n%b" % (len(body), body)
                )
                await writer.drain()
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                pass
            finally:
                writer.close()

        return await asyncio.start_server(answer, host, port)


FLUSH_AFTER = 0.05
"""Seconds a record waits to be written: lines go out in batches, after the answers they
describe, not between an answer and the client's next request."""


class AuditLog:
    """Writes records as JSON lines (to a file, appended, or stderr) and counts them.

    Each record is counted and formatted at once (a batch formatted at flush time would stall
    one request by all its lines) and written within :data:`FLUSH_AFTER`, in one write, or
    at once outside an event loop; :meth:`close` writes what is pending.
    """

    def __init__(self, path: Path | None = None, metrics: Metrics | None = None) -> None:
        self.path = path
        self.stream: TextIO = sys.stderr if path is None else _append(path)
        self.metrics = metrics or Metrics()
        self.pending: list[str] = []
        self.flushing: asyncio.TimerHandle | None = None

    def write(self, record: Record) -> None:
        record.latency_ms = round((time.time() - record.started) * 1000, 3)
        self.metrics.observe(record)
        self.pending.append(record.line() + "\n")
        if self.flushing is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
        else:
            self.flushing = loop.call_later(FLUSH_AFTER, self.flush)

    def flush(self) -> None:
        if self.flushing is not None:
            self.flushing.cancel()
            self.flushing = None
        pending, self.pending = self.pending, []
        if pending:
            self.stream.write("".join(pending))
            self.stream.flush()

    def reopen(self) -> None:
        """Write what is pending, then go on in a file at the log's path again (after
        logrotate moved it away: the guard reopens it on SIGHUP)."""
        self.flush()
        if self.path is not None:
            self.stream.close()
            self.stream = _append(self.path)

    def close(self) -> None:
        self.flush()
        if self.stream is not sys.stderr:
            self.stream.close()


def _append(path: Path) -> TextIO:
    """The log opened for appending; a new one is the owner's alone (it names clients and
    objects). It lives as long as the log: :meth:`AuditLog.close` closes it."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "a")
