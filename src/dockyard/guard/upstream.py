"""The engine behind the guard: a unix socket or TCP with TLS, spoken to in HTTP/1.1 only.

Each client connection gets its own upstream connection (a hijacked attach then owns it
outright); ownership lookups share a small pool of their own.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from dockyard.errors import DockyardError
from dockyard.guard import http, tlsstream
from dockyard.guard.link import Link
from dockyard.guard.tlsstream import Writer

LOOKUP_LIMIT = 4 * 1024 * 1024
"""Largest inspect answer read for an ownership lookup."""

Streams = tuple[http.Reader, Writer]


@dataclass(frozen=True, slots=True)
class Upstream:
    """Where dockerd listens; ``tls`` is set for ``tcp://`` addresses."""

    url: str
    unix_path: str | None = None
    host: str = ""
    port: int = 0
    tls: ssl.SSLContext | None = None
    server_name: str | None = None  # the certificate name, when connecting by address

    async def connect(self) -> Streams:
        loop = asyncio.get_running_loop()
        if self.unix_path is not None:
            _, link = await loop.create_unix_connection(Link, self.unix_path)
            return link, link
        if self.tls is None:
            _, link = await loop.create_connection(Link, self.host, self.port)
            return link, link
        raw_reader, raw_writer = await asyncio.open_connection(
            self.host, self.port, limit=http.HEAD_LIMIT
        )
        # TLS run by tlsstream, not asyncio, so a hijacked stream can half-close both ways.
        reader = asyncio.StreamReader(limit=http.HEAD_LIMIT)
        writer = await tlsstream.connect(
            raw_reader, raw_writer, self.tls, reader, self.server_name or self.host
        )
        return reader, writer


def parse_upstream(url: str, cert_path: Path | None = None) -> Upstream:
    """``unix:///var/run/docker.sock`` or ``tcp://host:2376[?name=CERTNAME]`` (TLS from
    ``cert_path``; ``name`` is the server certificate's name when ``host`` is an address)."""
    parts = urlsplit(url)
    if parts.scheme == "unix" and parts.path:
        return Upstream(url=url, unix_path=parts.path)
    if parts.scheme == "tcp" and parts.hostname and parts.port:
        if cert_path is None:
            raise DockyardError(
                f"upstream {url} is TCP without TLS",
                fix="pass --upstream-cert-path DIR holding ca.pem, cert.pem and key.pem",
            )
        context = ssl.create_default_context(cafile=str(cert_path / "ca.pem"))
        context.load_cert_chain(cert_path / "cert.pem", cert_path / "key.pem")
        context.set_alpn_protocols(["http/1.1"])
        name = parse_qs(parts.query).get("name", [None])[0]
        return Upstream(
            url=url, host=parts.hostname, port=parts.port, tls=context, server_name=name
        )
    raise DockyardError(
        f"cannot read upstream {url!r}",
        fix="use unix:///var/run/docker.sock or tcp://HOST:PORT with --upstream-cert-path",
    )


class Lookups:
    """GET requests for ownership checks, over a few kept-alive connections."""

    def __init__(self, upstream: Upstream, size: int = 8) -> None:
        self.upstream = upstream
        self.idle: list[Streams] = []
        self.size = size

    async def get_json(self, path: str) -> tuple[int, Any]:
        """Status and decoded body of ``GET path``; raises ``OSError``/``HTTPError`` on failure.

        A kept connection the engine has since closed is retried once on a new one.
        """
        return await self.request_json("GET", path)

    async def request_json(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """As :meth:`get_json`, for any method, with ``body`` sent as JSON (only idempotent
        requests: a stale connection is retried)."""
        if self.idle:
            try:
                return await self._get(self.idle.pop(), method, path, body)
            except (OSError, http.HTTPError):
                pass
        return await self._get(await self.upstream.connect(), method, path, body)

    async def _get(self, streams: Streams, method: str, path: str, data: Any) -> tuple[int, Any]:
        reader, writer = streams
        sent = b"" if data is None else json.dumps(data).encode()
        extra = f"Content-Type: application/json\r\nContent-Length: {len(sent)}\r\n" if sent else ""
        try:
            writer.write(f"{method} {path} HTTP/1.1\r\nHost: docker\r\n{extra}\r\n".encode() + sent)
            raw = await http.read_head(reader)
            if raw is None:
                raise http.HTTPError("upstream closed the connection", 502)
            head = http.parse_response(raw)
            pieces = http.body_of(reader, head)
            if pieces is None:
                raise http.HTTPError("upstream answer without a length", 502)
            body = await http.collect(pieces, LOOKUP_LIMIT)
        except BaseException:
            writer.close()
            raise
        if head.keep_alive and len(self.idle) < self.size:
            self.idle.append(streams)
        else:
            writer.close()
        return head.status, json.loads(body) if body.strip() else None

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()
