"""Audit lines written in batches, and the Prometheus text counted from the same records."""

from __future__ import annotations

import asyncio
import json
import stat

from dockyard.guard import audit
from dockyard.guard.audit import AuditLog, Metrics, Record


def record(verdict: str = "allow", rule: str = "allow", latency: float = 0.0) -> Record:
    found = Record("unix:///g.sock", "alice", "GET", "/_ping", verdict, rule, status=200)
    found.bytes_in, found.bytes_out = 10, 20
    found.latency_ms = latency
    return found


def test_outside_an_event_loop_a_record_is_written_at_once(tmp_path):
    log = AuditLog(tmp_path / "audit.log")
    log.write(record())
    line = json.loads((tmp_path / "audit.log").read_text())
    assert (line["owner"], line["path"], line["status"]) == ("alice", "/_ping", 200)
    log.close()
    assert stat.S_IMODE((tmp_path / "audit.log").stat().st_mode) == 0o600


def test_in_an_event_loop_records_are_batched_and_written_soon(tmp_path):
    path = tmp_path / "audit.log"

    async def serve() -> tuple[str, str]:
        log = AuditLog(path)
        for _ in range(3):
            log.write(record())
        before = path.read_text()
        await asyncio.sleep(audit.FLUSH_AFTER * 4)
        return before, path.read_text()

    before, after = asyncio.run(serve())
    assert before == ""  # nothing between an answer and the next request
    assert len(after.splitlines()) == 3


def test_close_writes_what_is_pending(tmp_path):
    path = tmp_path / "audit.log"

    async def serve() -> AuditLog:
        log = AuditLog(path)
        log.write(record())
        log.flush()
        log.write(record(verdict="deny", rule="privileged"))
        return log

    log = asyncio.run(serve())
    log.close()  # (after its loop is gone, as the command closes it)
    verdicts = [json.loads(line)["verdict"] for line in path.read_text().splitlines()]
    assert verdicts == ["allow", "deny"]


def test_metrics_count_by_verdict_and_rule_with_a_cumulative_histogram():
    metrics = Metrics()
    for latency in (0.2, 0.5, 3.0, 20_000.0):
        metrics.observe(record(latency=latency))
    metrics.observe(record("deny", "privileged", 1.0))
    text = metrics.exposition()
    assert 'dockyard_guard_requests_total{verdict="allow",rule="allow"} 4' in text
    assert 'dockyard_guard_requests_total{verdict="deny",rule="privileged"} 1' in text
    assert 'dockyard_guard_bytes_total{direction="in"} 50' in text
    assert 'dockyard_guard_latency_ms_bucket{le="0.5"} 2' in text
    assert 'dockyard_guard_latency_ms_bucket{le="1"} 3' in text
    assert 'dockyard_guard_latency_ms_bucket{le="5"} 4' in text
    assert 'dockyard_guard_latency_ms_bucket{le="10000"} 4' in text
    assert 'dockyard_guard_latency_ms_bucket{le="+Inf"} 5' in text
    assert "dockyard_guard_latency_ms_count 5" in text


def test_reopen_goes_on_in_a_new_file_at_the_same_path(tmp_path):
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    log.write(record())
    path.rename(tmp_path / "audit.log.1")  # (what logrotate does before it signals)
    log.write(record(verdict="deny", rule="privileged"))
    log.reopen()
    log.write(record(verdict="warn", rule="privileged"))
    log.close()
    rotated = [
        json.loads(line)["verdict"] for line in (tmp_path / "audit.log.1").read_text().splitlines()
    ]
    assert rotated == ["allow", "deny"]
    assert [json.loads(line)["verdict"] for line in path.read_text().splitlines()] == ["warn"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
