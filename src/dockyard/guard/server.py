"""The guard's data path: accept, parse, decide, forward, relay.

One request at a time per client connection, each decided by the pure core
(:func:`~dockyard.guard.request.canonicalize`, :func:`~dockyard.guard.framing.check`,
:func:`~dockyard.guard.policy.evaluate`) before a byte of it goes upstream. Every client
connection has its own upstream connection, so a hijacked attach or exec simply becomes a
raw two-way relay of that pair; until dockerd has really switched protocols (101, or its
plain 200 raw stream on a hijacking endpoint) nothing is relayed unparsed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import ssl
import sys
import traceback
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import parse_qs, urlsplit

from dockyard import labels, state
from dockyard.errors import DockyardError
from dockyard.guard import escapes, h2grpc, http, ownership, rewrite, solve, tlsstream
from dockyard.guard.audit import AuditLog, Record
from dockyard.guard.framing import IGNORED_BODY_LIMIT, Body, Framing, check
from dockyard.guard.gojson import GoJSONError, decode_object
from dockyard.guard.link import Link
from dockyard.guard.policy import CREATES, Profile, Verdict, confine, deny, evaluate
from dockyard.guard.request import UNKNOWN, CanonicalRequest, RequestError, canonicalize
from dockyard.guard.sessions import SESSION_HEADER, UPLOAD_PREFIX
from dockyard.guard.tagbook import TagBook
from dockyard.guard.tlsstream import Writer
from dockyard.guard.upstream import Lookups, Streams, Upstream

Mode = Literal["enforce", "warn", "audit"]

HEAD_TIMEOUT = 10.0
"""Seconds a new connection has to send its first request's head and JSON body (clients
connect when they have a request ready: a slow or half-sent head only holds a connection)."""

IDLE_TIMEOUT = 120.0
"""Seconds a kept-alive connection may sit between requests (or spend sending one's head
and JSON body). Neither limit applies once a request is forwarded: long streams (``logs
-f``, attach, builds) run as long as they run."""

MAX_PER_CLIENT = 256
"""Open connections one owner may hold at once (the guard's own limit is
:data:`MAX_CONNECTIONS`): one client cannot starve the others."""

REFUSAL_READ = 2.0
"""Seconds a refused connection's first request head is awaited before its 503."""

ABANDON_DELAY = 2.0
"""Seconds a response keeps streaming after its client hung up."""

SMALL_BODY = 64 * 1024
"""Sized answers up to this are relayed with their head in one write."""

MAX_CONNECTIONS = 2048

ROLE_GUARDED = labels.ROLE_GUARDED
"""The role label of objects created by clients of a guard."""

HIJACKING = frozenset({"container.attach", "exec.start"})
REWRITTEN_REFS = frozenset({"container", "network"})
"""Kinds whose path reference is replaced by the ID its ownership was checked on."""

STAMP_BODIES = frozenset({"container.create", "volume.create", "network.create"})
TAGGING = frozenset({"build", "image.tag", "commit"})


@dataclass(frozen=True, slots=True)
class Listener:
    """An address clients connect to, and the owner every client of it acts as (if given)."""

    url: str
    owner: str | None = None
    mode: int = 0o660
    tls: ssl.SSLContext | None = None
    """Mutual TLS on a TCP listener, run per connection by :mod:`~dockyard.guard.tlsstream`."""


def parse_listen(url: str, default_owner: str | None = None) -> Listener:
    """``unix:///run/x.sock[?owner=NAME&mode=0660]`` or ``tcp://HOST:PORT[?owner=NAME]``."""
    parts = urlsplit(url)
    options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    unknown = set(options) - {"owner", "mode"}
    if unknown or parts.scheme not in ("unix", "tcp"):
        raise DockyardError(
            f"cannot read --listen {url!r}",
            fix="use unix:///PATH[?owner=NAME&mode=0660] or tcp://HOST:PORT[?owner=NAME]",
        )
    try:
        mode = int(options.get("mode", "660"), 8)
    except ValueError:
        raise DockyardError(f"--listen {url!r}: mode is not octal") from None
    owner = options.get("owner") or default_owner
    return Listener(
        url=url.split("?", 1)[0],
        owner=ownership.clean_owner(owner) if owner else None,
        mode=mode,
    )


@dataclass
class Settings:
    upstream: Upstream
    profile: Profile
    listeners: tuple[Listener, ...]
    mode: Mode = "enforce"
    audit: AuditLog = field(default_factory=AuditLog)
    tags: TagBook = field(default_factory=TagBook)
    """The image tags each owner made here (kept in a file with ``--tags-file``)."""
    stamp: Mapping[str, str] = field(default_factory=lambda: labels.managed(ROLE_GUARDED))
    """Labels added to everything clients create besides their owner's, so dockyard's
    listings and clean-ups find it."""


class ClientReader(http.Reader, Protocol):
    """What a client's requests are read from: a :class:`Link`, or a :class:`_TLSReader`;
    ``on_eof`` is called when the client goes away."""

    on_eof: Callable[[], None] | None

    async def readexactly(self, n: int) -> bytes: ...


class _TLSReader(asyncio.StreamReader):
    """What a TLS client sent, decrypted; it tells its connection when the client goes away."""

    on_eof: Callable[[], None] | None = None

    def feed_eof(self) -> None:
        super().feed_eof()
        if self.on_eof is not None:
            self.on_eof()


class DeniedError(Exception):
    """A request answered by the guard itself; ``close`` when its body could not be skipped."""

    def __init__(self, verdict: Verdict, status: int = 403, *, close: bool = False) -> None:
        super().__init__(verdict.message)
        self.verdict = verdict
        self.status = status
        self.close = close


@dataclass(slots=True)
class Exchange:
    """One request on its way through the guard."""

    head: http.Head
    record: Record
    request: CanonicalRequest
    framing: Framing
    body: bytes
    resolved: dict[tuple[str, str], str] = field(default_factory=dict)
    """The IDs the request's ownership needs resolved to."""
    answer: bytes = b""
    """dockerd's answer when small and sized (kept to learn what was created)."""
    build_id: str | None = None
    """The build ID this request holds until it is answered."""


class Guard:
    """The guard server: its listeners, its lookups and its connections."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.resolver = ownership.Resolver(
            Lookups(settings.upstream),
            settings.profile.rules.allow_bind,
            settings.tags,
            {**settings.stamp},
        )
        self.servers: list[asyncio.Server] = []
        self.connections: set[asyncio.Task[None]] = set()
        self.per_owner: dict[str, int] = {}
        """Open connections by owner (bounded by :data:`MAX_PER_CLIENT`)."""

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for listener in self.settings.listeners:
            parts = urlsplit(listener.url)

            def factory(listener: Listener = listener) -> asyncio.BaseProtocol:
                context = listener.tls
                if context is None:
                    return Link(on_connected=lambda link: self._track_link(link, listener))
                # TLS is run per connection (tlsstream), not by asyncio, so it can half-close.
                return asyncio.StreamReaderProtocol(
                    asyncio.StreamReader(limit=http.HEAD_LIMIT),  # the encrypted bytes
                    lambda r, w: self._track(self._serve_tls(r, w, listener, context), w),
                )

            if parts.scheme == "unix":
                path = Path(parts.path)
                state.clear_stale_socket(path)
                path.parent.mkdir(parents=True, exist_ok=True)
                with state.created_with_mode(listener.mode):
                    server = await loop.create_unix_server(factory, str(path))
            else:
                server = await loop.create_server(factory, parts.hostname, parts.port or 2376)
            self.servers.append(server)

    async def serve_forever(self) -> None:
        await asyncio.gather(*(server.serve_forever() for server in self.servers))

    async def close(self) -> None:
        for server in self.servers:
            server.close()
        for task in list(self.connections):
            task.cancel()
        await asyncio.gather(*self.connections, return_exceptions=True)
        for server in self.servers:
            await server.wait_closed()
        self.resolver.lookups.close()
        self.settings.audit.flush()

    def _track_link(self, link: Link, listener: Listener) -> None:
        self._track(self._serve(link, link, listener), link)

    def _track(self, serving: Coroutine[None, None, None], writer: Writer) -> None:
        """Run a new connection's task, unless there are too many already."""
        if len(self.connections) >= MAX_CONNECTIONS:
            serving.close()
            writer.close()
            return
        task = asyncio.get_running_loop().create_task(serving)
        self.connections.add(task)
        task.add_done_callback(self.connections.discard)

    async def _serve_tls(
        self,
        raw_reader: asyncio.StreamReader,
        raw_writer: asyncio.StreamWriter,
        listener: Listener,
        context: ssl.SSLContext,
    ) -> None:
        reader = _TLSReader(limit=http.HEAD_LIMIT)
        try:
            writer = await tlsstream.accept(raw_reader, raw_writer, context, reader)
        except (OSError, TimeoutError):
            return  # a failed handshake (an unknown certificate) costs only its connection
        await self._serve(reader, writer, listener)

    async def _serve(self, reader: ClientReader, writer: Writer, listener: Listener) -> None:
        owner = ownership.identify(
            listener.owner, writer.get_extra_info("ssl_object"), writer.get_extra_info("socket")
        )
        peer = writer.get_extra_info("peername")
        client = f"{listener.url}" + (f" {peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "")
        held = self.per_owner.get(owner, 0)
        if held >= MAX_PER_CLIENT:
            self.settings.audit.write(
                Record(client, owner, "", "", "deny", "connections", "too many", 503)
            )
            message = f"dockyard guard: connections: {owner} holds {held} open connections"
            # Its first request head is read before the answer, briefly: closing on unread
            # data would reset the connection, and the client would see that, not the message.
            with contextlib.suppress(OSError, TimeoutError, http.HTTPError):
                await asyncio.wait_for(http.read_head(reader), REFUSAL_READ)
            with contextlib.suppress(OSError):
                writer.write(
                    http.json_response(503, json.dumps({"message": message}).encode(), close=True)
                )
                await writer.drain()
            writer.close()
            return
        self.per_owner[owner] = held + 1
        try:
            await Connection(self, reader, writer, owner, client).run()
        finally:
            self.per_owner[owner] -= 1
            if not self.per_owner[owner]:
                del self.per_owner[owner]


class Connection:
    """One client connection and its upstream connection, handled one request at a time."""

    def __init__(
        self,
        guard: Guard,
        reader: ClientReader,
        writer: Writer,
        owner: str,
        client: str,
    ) -> None:
        self.guard = guard
        self.settings = guard.settings
        self.reader = reader
        self.writer = writer
        self.owner = owner
        self.client = client
        self.upstream: Streams | None = None
        self.abandoned = False
        self.answering = False
        """Whether the current response has begun (an error then can only close)."""
        self.served = 0
        """Requests read on this connection so far."""
        self.session: str | None = None
        """The BuildKit session this connection holds open (once it is a ``/session``)."""

    async def run(self) -> None:
        try:
            while await self._one():
                pass
        except http.HTTPError as exc:
            self.settings.audit.write(
                Record(self.client, self.owner, "", "", "error", "http", str(exc), exc.status)
            )
            if not self.answering:
                body = json.dumps({"message": f"dockyard guard: http: {exc}"}).encode()
                with contextlib.suppress(OSError):
                    self.writer.write(http.json_response(exc.status, body, close=True))
                    await self.writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            if not self.abandoned:
                raise
        except Exception:  # a bug must cost one connection, never the guard
            traceback.print_exc(file=sys.stderr)
        finally:
            if self.session is not None:
                self.guard.resolver.sessions.release(self.session)
            self.writer.close()
            if self.upstream is not None:
                self.upstream[1].close()

    async def _one(self) -> bool:
        """Serve one request; whether the connection stays open for another."""
        self.answering = False
        limit = IDLE_TIMEOUT if self.served else HEAD_TIMEOUT
        timer = asyncio.get_running_loop().call_later(limit, self.writer.close)
        try:
            raw = await http.read_head(self.reader)
            if raw is None:
                return False
            head = http.parse_request(raw)
            self.served += 1
            record = Record(self.client, self.owner, head.method, "")
            record.bytes_in = len(raw)
            try:
                exchange = await self._read(head, record)
            except DeniedError as denied:
                return await self._refuse(record, denied)
        finally:
            timer.cancel()
        try:
            verdict = await self._decide(exchange)
            return await self._forward(exchange, verdict)
        except DeniedError as denied:
            return await self._refuse(record, denied)
        finally:
            if exchange.build_id is not None:
                self.guard.resolver.builds.release(exchange.build_id)
            if not record.status:
                record.status = 502
            self.settings.audit.write(record)

    async def _read(self, head: http.Head, record: Record) -> Exchange:
        """Route the request, judge its framing and read a JSON body, or refuse it."""
        try:
            request: CanonicalRequest | None = canonicalize(head.method, head.target)
            problem = ""
        except RequestError as exc:
            request, problem = None, str(exc)
        framing = check(request.endpoint if request else UNKNOWN, head.headers)
        record.path = request.path if request else head.target[:200].decode("latin-1")
        if not framing.ok:
            raise DeniedError(deny("framing", framing.reason), close=True)
        if request is None:
            skippable = not framing.chunked and (framing.length or 0) <= IGNORED_BODY_LIMIT
            raise DeniedError(deny("route", problem), close=not skippable)
        body = b""
        if framing.body is Body.JSON and framing.length:
            if (head.header("expect") or "").lower() == "100-continue":
                self.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            body = await self.reader.readexactly(framing.length)
            record.bytes_in += len(body)
        return Exchange(head, record, request, framing, body)

    async def _decide(self, exchange: Exchange) -> Verdict:
        """The policy's verdict with its ownership needs settled; raises :class:`DeniedError`."""
        profile, request, record = self.settings.profile, exchange.request, exchange.record
        try:
            parsed = decode_object(exchange.body) if exchange.body else None
        except GoJSONError as exc:
            verdict = deny("body", str(exc))
        else:
            verdict = evaluate(request, parsed, profile, self.owner)
        status = 403
        if verdict.allow and verdict.needs:
            settled = await self.guard.resolver.settle(verdict.needs, self.owner)
            exchange.resolved = settled.ids
            if not settled.ok:
                verdict, status = deny("ownership", settled.reason), settled.status
        if verdict.allow and request.endpoint == "session":
            verdict = self._claim_session(exchange.head, verdict)
        if verdict.allow and request.endpoint == "build":
            verdict = self._claim_build(exchange, verdict)
        record.rule, record.reason = verdict.rule, verdict.reason
        if verdict.allow:
            return verdict
        if self.settings.mode == "enforce":
            # A skipped request body (a denied build) cannot be read past: close after.
            raise DeniedError(verdict, status, close=exchange.framing.body is Body.STREAM)
        record.verdict = "warn"
        if self.settings.mode == "warn":
            print(f"dockyard guard: WARN (not enforced): {verdict.message}", file=sys.stderr)
        # Not enforced: forwarded, yet still stamped and filtered as the profile confines.
        return confine(request, self.owner) if profile.ownership else verdict

    def _claim_session(self, head: http.Head, verdict: Verdict) -> Verdict:
        """Hold the session's ID for this connection, or deny (see :mod:`.sessions`)."""
        idents = [value for name, value in head.headers if name.lower() == SESSION_HEADER]
        if len(idents) > 1:
            return deny("buildkit", "a BuildKit session with more than one ID")
        problem = self.guard.resolver.sessions.claim(self.owner, idents[0] if idents else "")
        if problem:
            return deny("buildkit", problem)
        self.session = idents[0]
        return verdict

    def _claim_build(self, exchange: Exchange, verdict: Verdict) -> Verdict:
        """Hold a build's ID while it runs, so that only its client can send it a context
        or cancel it (see :mod:`.sessions`)."""
        ident = exchange.request.param("buildid") or ""
        if not ident or ident.startswith(UPLOAD_PREFIX):
            return verdict
        problem = self.guard.resolver.builds.claim(self.owner, ident)
        if problem:
            return deny("build", problem)
        exchange.build_id = ident
        return verdict

    async def _refuse(self, record: Record, denied: DeniedError) -> bool:
        verdict = denied.verdict
        record.verdict, record.rule, record.reason = "deny", verdict.rule, verdict.reason
        record.status = denied.status
        payload = json.dumps({"message": verdict.message}).encode()
        self.writer.write(http.json_response(denied.status, payload, close=denied.close))
        record.bytes_out = len(payload)
        await self.writer.drain()
        return not denied.close

    async def _upstream(self) -> Streams:
        if self.upstream is None:
            try:
                self.upstream = await self.settings.upstream.connect()
            except OSError as exc:
                raise http.HTTPError(f"upstream {self.settings.upstream.url}: {exc}", 502) from None
        return self.upstream

    def _stamp(self, verdict: Verdict) -> Mapping[str, str]:
        if not verdict.stamp_labels:
            return {}
        return {**self.settings.stamp, **verdict.stamp_labels}

    def _target(self, exchange: Exchange, verdict: Verdict) -> str:
        request = exchange.request
        query = request.query
        try:
            if verdict.owner_filter:
                query = rewrite.with_filter(query, verdict.owner_filter)
            if verdict.stamp_labels and request.endpoint == "build":
                query = rewrite.with_build_labels(query, self._stamp(verdict))
        except rewrite.RewriteError as exc:
            # (a streamed body, not read, cannot be skipped: the connection closes after)
            stream = exchange.framing.body is Body.STREAM
            raise DeniedError(deny("filters", str(exc)), close=stream) from None
        ref = None
        if request.kind in REWRITTEN_REFS and request.ref is not None:
            ref = exchange.resolved.get((request.kind, request.ref))
        return rewrite.target(request, ref=ref, query=query)

    async def _forward(self, exchange: Exchange, verdict: Verdict) -> bool:
        head, request, framing = exchange.head, exchange.request, exchange.framing
        target = self._target(exchange, verdict)
        headers = list(head.end_to_end)
        body = exchange.body
        if verdict.stamp_labels and request.endpoint in STAMP_BODIES:
            body = rewrite.stamped_body(body, self._stamp(verdict))
            if head.header("content-type") is None:
                headers.append(("Content-Type", "application/json"))
        pieces: AsyncIterator[http.Data] | None = None
        if framing.body is Body.STREAM and framing.chunked:
            headers.append(("Transfer-Encoding", "chunked"))
            pieces = http.chunked(self.reader)
        elif framing.body is Body.STREAM and framing.length:
            headers.append(("Content-Length", str(framing.length)))
            pieces = http.sized(self.reader, framing.length)
        else:
            if framing.body is Body.NONE and framing.length:
                await self.reader.readexactly(framing.length)  # bounded by framing; dropped
            if body or head.method in ("POST", "PUT"):
                headers.append(("Content-Length", str(len(body))))
        if framing.upgrade is not None:
            headers += [("Connection", "Upgrade"), ("Upgrade", framing.upgrade)]
        _, up_writer = await self._upstream()
        up_writer.write(http.render_head(f"{head.method} {target} HTTP/1.1", headers) + body)
        if pieces is not None:
            exchange.record.bytes_in += await _copy(pieces, up_writer, chunk=framing.chunked)
            if framing.chunked:
                up_writer.write(http.LAST_CHUNK)
        await up_writer.drain()
        keep = await self._respond(exchange)
        if 200 <= exchange.record.status < 300:
            self._learn(exchange)
        return keep and head.keep_alive

    def _learn(self, exchange: Exchange) -> None:
        """Remember what a successful request made this client own."""
        request = exchange.request
        if request.endpoint in TAGGING:
            self.settings.tags.record(self.owner, _created_tags(request))
        elif request.endpoint == "image.delete" and request.ref:
            self.settings.tags.forget(self.owner, request.ref)
        created = CREATES.get(request.endpoint)
        if created and exchange.record.verdict == "allow" and self.settings.profile.ownership:
            self.guard.resolver.created(created, exchange.answer, self.owner)

    async def _respond(self, exchange: Exchange) -> bool:
        """Relay the upstream's answer; whether the pair of connections can serve another."""
        head, request, record = exchange.head, exchange.request, exchange.record
        up_reader, up_writer = await self._upstream()
        while True:
            raw = await http.read_head(up_reader)
            if raw is None:
                raise http.HTTPError("upstream closed the connection", 502)
            answer = http.parse_response(raw)
            if answer.status == 101 or not 100 <= answer.status < 200:
                break
        record.status = answer.status
        self.answering = True
        if head.method == "HEAD" or answer.status in (204, 304):
            self.writer.write(raw)
            record.bytes_out += len(raw)
            await self.writer.drain()
            return answer.keep_alive
        # dockerd's own framing goes through as it is, checked on the way (the guard
        # re-frames only what it sends to dockerd).
        pieces = http.body_of(up_reader, answer, framed=True)
        length = answer.header("content-length")
        if pieces is not None and length is not None and int(length) <= SMALL_BODY:
            # A small sized answer (most API calls) goes out in one write with its head.
            body = exchange.answer = b"".join([piece async for piece in pieces])
            self.writer.write(raw + body)
            record.bytes_out += len(raw) + len(body)
            await self.writer.drain()
            return answer.keep_alive
        self.writer.write(raw)
        record.bytes_out += len(raw)
        if answer.status == 101 and request.endpoint == "grpc" and self.settings.profile.escapes:
            await self.writer.drain()
            await GrpcRelay(self, record).run()
            return False
        if answer.status == 101 or (
            pieces is None and answer.status == 200 and request.endpoint in HIJACKING
        ):
            await self.writer.drain()
            record.bytes_in, record.bytes_out = await _splice(
                (self.reader, self.writer), (up_reader, up_writer), record
            )
            return False
        self.reader.on_eof = self._abandon_later
        try:
            record.bytes_out += await _copy(pieces or http.until_eof(up_reader), self.writer)
        finally:
            self.reader.on_eof = None
        await self.writer.drain()
        return pieces is not None and answer.keep_alive

    def _abandon_later(self) -> None:
        """The client hung up during a response: stop relaying it soon (a quiet ``logs -f``
        would otherwise hold its upstream connection forever)."""
        asyncio.get_running_loop().call_later(ABANDON_DELAY, self._abandon)

    def _abandon(self) -> None:
        if self.reader.on_eof is None:
            return
        self.abandoned = True
        self.writer.close()
        if self.upstream is not None:
            self.upstream[1].close()


class GrpcRelay:
    """buildx's ``/grpc`` after the switch to h2c: every frame the client sends is read
    (:mod:`.h2grpc`) and each gRPC message judged (:mod:`.solve`) before it goes on; a
    refused call ends the connection with a gRPC error the client prints."""

    def __init__(self, connection: Connection, record: Record) -> None:
        self.connection = connection
        self.record = record
        self.inspector = h2grpc.Inspector()
        self.answers = h2grpc.Answers()
        self.refs: list[str] = []
        """The Solve refs this connection holds (their Status is this client's to follow)."""
        self.failure: h2grpc.H2Error | None = None
        self.pending: set[asyncio.Task[None]] = set()
        """Messages judged apart (Status calls waiting for their Solve)."""
        self.up: asyncio.Task[None]

    async def run(self) -> None:
        connection = self.connection
        up_reader, up_writer = await connection._upstream()
        loop = asyncio.get_running_loop()
        down = loop.create_task(self._down(up_reader))
        self.up = loop.create_task(self._up(up_writer))
        try:
            await self.up
        except h2grpc.H2Error as exc:
            self.failure = exc
        except asyncio.CancelledError:
            if self.failure is None:  # (the guard is closing, not a refusal)
                raise
        finally:
            for task in (down, *self.pending):
                task.cancel()
            await asyncio.gather(down, *self.pending, return_exceptions=True)
            if self.failure is not None:
                self._refuse(self.failure)
            up_writer.close()
            for ref in self.refs:
                connection.guard.resolver.builds.release(ref)

    def _refuse(self, exc: h2grpc.H2Error) -> None:
        self.record.verdict, self.record.rule, self.record.reason = "deny", "buildkit", str(exc)
        answered = exc.stream in self.answers.answered
        with contextlib.suppress(OSError, RuntimeError):
            self.connection.writer.write(h2grpc.refusal(exc.stream, str(exc), answered=answered))
            self.connection.writer.close()

    async def _down(self, up_reader: http.Reader) -> None:
        writer = self.connection.writer
        with contextlib.suppress(OSError, RuntimeError):
            while piece := await up_reader.read(http.PIECE):
                out = self.answers.feed(bytes(piece))
                self.record.bytes_out += len(piece)
                if out:
                    writer.write(out)
                    await writer.drain()
            writer.close()

    async def _up(self, up_writer: Writer) -> None:
        reader = self.connection.reader
        while piece := await reader.read(http.PIECE):
            self.record.bytes_in += len(piece)
            for event in self.inspector.feed(bytes(piece)):
                if isinstance(event, bytes):
                    up_writer.write(event)
                    continue
                if event.method == solve.STATUS:
                    # (judged apart: it waits for a Solve that may come behind it)
                    task = asyncio.get_running_loop().create_task(self._apart(event, up_writer))
                    self.pending.add(task)
                    task.add_done_callback(self.pending.discard)
                    continue
                await self._pass(event, up_writer)
            await up_writer.drain()
        if up_writer.can_write_eof():
            up_writer.write_eof()

    async def _pass(self, event: h2grpc.Message, up_writer: Writer) -> None:
        """Forward a message's frames once it is judged harmless (else :class:`H2Error`)."""
        problem = await self._judge(event)
        if problem:
            raise h2grpc.H2Error(problem, event.stream)
        for raw in self.inspector.release(event.stream):
            up_writer.write(raw)

    async def _apart(self, event: h2grpc.Message, up_writer: Writer) -> None:
        try:
            await self._pass(event, up_writer)
        except h2grpc.H2Error as exc:
            self.failure = exc
            self.up.cancel()

    async def _judge(self, message: h2grpc.Message) -> str | None:
        """Why a call's message is refused, or ``None`` once its needs are settled."""
        connection = self.connection
        resolver, owner = connection.guard.resolver, connection.owner
        needs: list[escapes.Need] = []
        try:
            if message.method == solve.SOLVE:
                found = solve.judge_solve(message.data)
                needs += [escapes.Need("image", tag, missing_ok=True) for tag in found.tags]
                needs += [escapes.Need(escapes.SESSION, sid) for sid in sorted(found.sessions)]
            elif message.method == solve.STATUS:
                needs.append(escapes.Need(escapes.BUILD_ID, solve.status_ref(message.data)))
        except solve.SolveDeniedError as exc:
            return str(exc)
        if message.method == solve.SOLVE:
            problem = resolver.builds.claim(owner, found.ref) if found.ref else None
            if problem:
                return problem
            if found.ref:
                self.refs.append(found.ref)
        if connection.settings.profile.ownership and needs:
            settled = await resolver.settle(needs, owner)
            if not settled.ok:
                return settled.reason
        if message.method == solve.SOLVE and found.tags:
            connection.settings.tags.record(owner, found.tags)
        return None


def _created_tags(request: CanonicalRequest) -> list[str]:
    if request.endpoint == "build":
        return escapes.build_tags(request)
    repo = request.param("repo")
    return [f"{repo}:{request.param('tag')}" if request.param("tag") else repo] if repo else []


async def _copy(pieces: AsyncIterator[http.Data], writer: Writer, chunk: bool = False) -> int:
    """Write a body's pieces as they come (re-chunked when ``chunk``); the bytes copied."""
    total = 0
    async for piece in pieces:
        writer.write(http.encode_chunk(piece) if chunk else piece)
        total += len(piece)
        await writer.drain()
    return total


async def _pipe(reader: http.Reader, writer: Writer) -> int:
    total = 0
    try:
        while piece := await reader.read(http.PIECE):
            writer.write(piece)
            total += len(piece)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, RuntimeError):  # (uvloop: RuntimeError once the other side closed it)
        writer.close()
    return total


async def _splice(
    client: tuple[http.Reader, Writer], upstream: Streams, record: Record
) -> tuple[int, int]:
    """Relay a hijacked connection both ways; each side's half-close is passed on."""
    sent, received = await asyncio.gather(
        _pipe(client[0], upstream[1]), _pipe(upstream[0], client[1])
    )
    return record.bytes_in + sent, record.bytes_out + received


async def run(settings: Settings, *, ready: Callable[[], None] | None = None) -> None:
    """Serve until cancelled."""
    guard = Guard(settings)
    await guard.start()
    if ready is not None:
        ready()
    try:
        await guard.serve_forever()
    finally:
        await guard.close()


def event_loop_policy() -> asyncio.AbstractEventLoopPolicy:
    """uvloop's policy when it is installed (faster relaying), else asyncio's own."""
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return asyncio.DefaultEventLoopPolicy()
    policy: asyncio.AbstractEventLoopPolicy = uvloop.EventLoopPolicy()
    return policy
