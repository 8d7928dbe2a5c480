"""The asyncio client: :func:`connect` returns an :class:`AsyncClient`."""

from __future__ import annotations

import asyncio
import collections
import os
import ssl
from typing import Any, Deque, Dict, List, Optional, Tuple, Union

from ._options import (
    DEFAULT_RECV_BUFFER,
    DEFAULT_TIMEOUT,
    Address,
    check_credential,
    check_int,
    check_timeout,
    parse_address,
    tls_context,
)
from .errors import (
    AuthRefusedError,
    HydrogenError,
    BadAuthReplyError,
    BrokerClosedError,
    ClientClosedError,
    ConnectionEndedError,
    HydrogenTimeoutError,
    ProtocolError,
    TransportError,
    UnexpectedEOFError,
)
from .frame import MAX_PAYLOAD, FrameDecoder, Payload, check_payload, encode_frame, telemetry_request, to_bytes
from .stats import Stats, parse_object, recognise_reply, to_stats

__all__ = ["AsyncClient", "connect"]

_READ_SIZE = 64 * 1024


async def connect(
    address: Address,
    *,
    timeout: Optional[float] = DEFAULT_TIMEOUT,
    credential: Union[str, bytes, None] = None,
    tls: Union[bool, ssl.SSLContext, None] = None,
    ca_file: Optional[str] = None,
    server_hostname: Optional[str] = None,
    cert_file: Optional[str] = None,
    key_file: Optional[str] = None,
    max_payload: int = MAX_PAYLOAD,
    recv_buffer: int = DEFAULT_RECV_BUFFER,
) -> "AsyncClient":
    """Connects to the broker at address: "host:port", "[v6]:port",
    "tcp://host:port", "tls://host:port" or (host, port).

    timeout (seconds, or None for no bound) bounds connecting and the
    broker's answer to the credential. With credential, the token is sent
    as the stream's first frame and connect returns once the broker has
    accepted it (raising AuthRefusedError with its reason otherwise). TLS
    is on for a tls:// address, tls=True or an ssl.SSLContext, ca_file or
    server_hostname; the certificate is verified against ca_file (or the
    system's CAs) and server_hostname (default: the host); cert_file (and
    key_file, unless the key is in cert_file) is a client certificate for a
    broker that requires one (mutual TLS). max_payload
    bounds what the broker may send; recv_buffer is how many messages wait
    for recv() before reading pauses.
    """
    host, port, use_tls = parse_address(address)
    timeout = check_timeout(timeout, "connect")
    cred = None if credential is None else check_credential(credential)
    check_int(max_payload, "max_payload", 0, MAX_PAYLOAD)
    check_int(recv_buffer, "recv_buffer", 1)
    ctx = tls_context(use_tls, tls, ca_file, server_hostname, cert_file, key_file)
    where = "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                host, port, ssl=ctx, server_hostname=(server_hostname or host) if ctx else None, limit=_READ_SIZE
            ),
            timeout,
        )
    except asyncio.TimeoutError:
        raise HydrogenTimeoutError("connect to %s: not connected within %gs" % (where, timeout)) from None
    except OSError as e:  # ssl.SSLError is an OSError
        raise TransportError("connect to %s: %s" % (where, _describe(e))) from e
    client = AsyncClient(reader, writer, max_payload, recv_buffer, where, ctx is not None)
    try:
        if cred is not None:
            left = None if deadline is None else max(0.001, deadline - loop.time())
            await client._authenticate(cred, left)
    except BaseException:
        await client._abort()
        raise
    client._start()
    return client


def _describe(e: OSError) -> str:
    if isinstance(e, ssl.SSLError):
        return "TLS: %s" % (getattr(e, "verify_message", None) or e.reason or e)
    if e.errno is not None:
        return os.strerror(e.errno)
    return str(e)


class AsyncClient:
    """One connection to a hydrogen broker, for asyncio. Made by
    :func:`connect`; use it in ``async with`` or call :meth:`close`.

    Methods are for one event loop (the one that connected). Messages are
    returned in the order they arrived; sends from one task reach the
    broker in the order sent.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        max_payload: int,
        recv_buffer: int,
        where: str,
        tls: bool,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._dec = FrameDecoder(max_payload)
        self._recv_buffer = recv_buffer
        self._frames: Deque[bytes] = collections.deque()
        self._waiters: Deque["asyncio.Future[bytes]"] = collections.deque()
        self._room: Optional["asyncio.Future[None]"] = None
        # The one outstanding telemetry request: whoever holds the turn has
        # (or is about to have) a request out; the reply passes it on.
        self._turn_busy = False
        self._turn_queue: Deque["asyncio.Future[None]"] = collections.deque()
        self._stats_fut: Optional["asyncio.Future[Tuple[Dict[str, Any], str]]"] = None
        self._send_lock = asyncio.Lock()
        self._reason: Optional[ConnectionEndedError] = None
        self._task: Optional["asyncio.Task[None]"] = None
        #: The identity the broker accepted the credential as; None without one.
        self.identity: Optional[str] = None
        #: "host:port" of the broker.
        self.address = where
        #: Whether the connection is over TLS.
        self.tls = tls

    # --- state -------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the connection has ended, for whatever reason."""
        return self._reason is not None

    @property
    def close_reason(self) -> Optional[ConnectionEndedError]:
        """Why the connection ended, or None while it is up."""
        return self._reason

    def _terminal(self) -> ConnectionEndedError:
        r = self._reason
        assert r is not None
        e = type(r)(str(r))
        e.__cause__ = r.__cause__
        return e

    # --- API ---------------------------------------------------------------

    async def send(self, payload: Payload) -> None:
        """Sends one message: bytes-like, or a str sent as UTF-8. Returns
        once the frame is written or buffered under the transport's mark.
        Raises PayloadTooLargeError (over 65,535 bytes) or
        TelemetryPayloadError (5 bytes starting with 0x0D) having sent
        nothing, TypeError for another type, or the reason the connection
        ended."""
        p = to_bytes(payload)
        check_payload(p)
        await self._write(encode_frame(p))

    async def _write(self, frame: bytes) -> None:
        if self._reason is not None:
            raise self._terminal()
        self._writer.write(frame)
        async with self._send_lock:  # Python 3.9 allows one drain() at a time
            try:
                await self._writer.drain()
            except (OSError, RuntimeError) as e:
                self._end(TransportError("write: %s" % e), e)
        if self._reason is not None and not isinstance(self._reason, ClientClosedError):
            raise self._terminal()

    async def recv(self, timeout: Optional[float] = None) -> bytes:
        """The next message, waiting up to timeout seconds (None: no bound)
        for one. Raises HydrogenTimeoutError when none came (no frame is
        lost). Once the connection has ended, returns the messages received
        before the end, then raises the reason (after close(), none)."""
        timeout = check_timeout(timeout, "recv")
        if self._frames:
            return self._pop()
        if self._reason is not None:
            raise self._terminal()
        fut: "asyncio.Future[bytes]" = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await asyncio.wait({fut}, timeout=timeout)
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self._frames.appendleft(fut.result())  # taken for a caller that went away: keep it
            raise
        finally:
            if not fut.done():
                fut.cancel()
            try:
                self._waiters.remove(fut)
            except ValueError:
                pass
        if fut.done() and not fut.cancelled():
            return fut.result()
        raise HydrogenTimeoutError("recv: no message within %gs" % timeout)

    async def stats(self, span: float, timeout: Optional[float] = None) -> Stats:
        """A telemetry reading over the next span seconds; it takes that
        long. The span is sent as given (as a float32); the broker refuses
        one that is not finite or not in (0, max] with BrokerRefusedError.
        One request is outstanding per connection: concurrent calls wait
        their turn. With a timeout (seconds, counted from the call) it
        raises HydrogenTimeoutError; the request then stays outstanding
        until its reply comes, which is dropped."""
        if isinstance(span, bool) or not isinstance(span, (int, float)):
            raise TypeError("hydrogen: stats span must be a number of seconds, not %s" % type(span).__name__)
        timeout = check_timeout(timeout, "stats")
        if self._reason is not None:
            raise self._terminal()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        if not await self._take_turn(timeout):
            raise HydrogenTimeoutError("stats: no reply within %gs" % timeout)
        if self._reason is not None:
            self._pass_turn()
            raise self._terminal()
        fut: "asyncio.Future[Tuple[Dict[str, Any], str]]" = loop.create_future()
        self._stats_fut = fut  # before the request goes out, so the reply cannot beat it
        try:
            await self._write(encode_frame(telemetry_request(span)))
        except BaseException:
            if self._stats_fut is fut:
                self._stats_fut = None
                self._pass_turn()
            raise
        left = None if deadline is None else max(0.0, deadline - loop.time())
        await asyncio.wait({fut}, timeout=left)
        if not fut.done():
            raise HydrogenTimeoutError("stats: no reply within %gs" % timeout)
        o, raw = fut.result()
        return to_stats(o, raw)

    async def close(self) -> None:
        """Closes the connection. Pending and later calls raise
        ClientClosedError; messages not yet received are dropped. Calling it
        again does nothing."""
        if self._reason is None:
            self._end(ClientClosedError("client closed"))
        self._frames.clear()
        await self._abort()

    async def wait_closed(self) -> ConnectionEndedError:
        """Waits until the connection ends, and returns why."""
        while self._reason is None:
            fut: "asyncio.Future[bytes]" = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                await asyncio.wait({fut})
            finally:
                if not fut.done():
                    fut.cancel()
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    self._frames.appendleft(fut.result())
                try:
                    self._waiters.remove(fut)
                except ValueError:
                    pass
        return self._reason

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __aiter__(self) -> "AsyncClient":
        return self

    async def __anext__(self) -> bytes:
        """The next message; the iteration ends when the connection ends in
        order (close(), or the broker closing it between frames) and raises
        the reason when it ends otherwise."""
        try:
            return await self.recv()
        except (ClientClosedError, BrokerClosedError):
            raise StopAsyncIteration from None

    # --- internals ---------------------------------------------------------

    async def _authenticate(self, credential: bytes, timeout: Optional[float]) -> None:
        self._writer.write(encode_frame(credential))
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            await asyncio.wait_for(self._writer.drain(), timeout)
            answer: Optional[bytes] = None
            while answer is None:
                left = None if deadline is None else max(0.001, deadline - loop.time())
                data = await asyncio.wait_for(self._reader.read(_READ_SIZE), left)
                if not data:
                    raise BrokerClosedError("broker closed the connection before answering the credential")
                frames = self._dec.feed(data)
                if frames:
                    answer = frames[0]
                    self._frames.extend(frames[1:])
        except asyncio.TimeoutError:
            raise HydrogenTimeoutError("no answer to the credential within %gs" % timeout) from None
        except HydrogenError:
            raise
        except OSError as e:
            raise TransportError("waiting for the answer to the credential: %s" % e) from e
        o = parse_object(answer)
        if o is not None and o.get("auth") == "ok" and isinstance(o.get("identity"), str):
            self.identity = o["identity"]
            return
        if o is not None and isinstance(o.get("error"), str):
            raise AuthRefusedError(o["error"])
        raise BadAuthReplyError(
            'broker\'s answer to the credential is not {"auth":"ok","identity":...} nor {"error":...}: %r'
            % answer[:200]
        )

    async def _take_turn(self, timeout: Optional[float]) -> bool:
        if not self._turn_busy:
            self._turn_busy = True
            return True
        fut: "asyncio.Future[None]" = asyncio.get_running_loop().create_future()
        self._turn_queue.append(fut)
        try:
            await asyncio.wait({fut}, timeout=timeout)
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._pass_turn()  # handed to a caller that went away
            raise
        finally:
            if not fut.done():
                fut.cancel()
                self._turn_queue.remove(fut)
        return True if fut.done() and not fut.cancelled() else False

    def _pass_turn(self) -> None:
        while self._turn_queue:
            f = self._turn_queue.popleft()
            if not f.done():
                f.set_result(None)  # the turn stays busy: it is f's now
                return
        self._turn_busy = False

    def _start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._read_loop())

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self._reader.read(_READ_SIZE)
                if not data:
                    n = self._dec.buffered
                    if n:
                        self._end(UnexpectedEOFError("broker closed the connection inside a frame (%d bytes of it read)" % n))
                    else:
                        self._end(BrokerClosedError("broker closed the connection"))
                    return
                try:
                    frames = self._dec.feed(data)
                except ProtocolError as e:
                    for p in getattr(e, "frames", []):
                        self._deliver(p)
                    self._end(ProtocolError(str(e)))
                    return
                for p in frames:
                    self._deliver(p)
                while len(self._frames) >= self._recv_buffer and self._reason is None:
                    self._room = asyncio.get_running_loop().create_future()
                    await self._room
                if self._reason is not None:
                    return
        except asyncio.CancelledError:
            raise
        except (OSError, RuntimeError) as e:
            self._end(TransportError("read: %s" % e), e)

    def _deliver(self, p: bytes) -> None:
        if self._reason is not None:
            return
        fut = self._stats_fut
        if fut is not None:
            o = recognise_reply(p)
            if o is not None:
                self._stats_fut = None
                self._pass_turn()
                if not fut.done():
                    fut.set_result((o, p.decode("utf-8")))
                return
        while self._waiters:
            w = self._waiters.popleft()
            if not w.done():
                w.set_result(p)
                return
        self._frames.append(p)

    def _pop(self) -> bytes:
        p = self._frames.popleft()
        room = self._room
        if room is not None and len(self._frames) <= self._recv_buffer // 2:
            self._room = None
            if not room.done():
                room.set_result(None)
        return p

    def _end(self, err: ConnectionEndedError, cause: Optional[BaseException] = None) -> None:
        if self._reason is not None:
            return
        if cause is not None:
            err.__cause__ = cause
        self._reason = err
        waiters: List["asyncio.Future[bytes]"] = list(self._waiters)
        self._waiters.clear()
        for w in waiters:
            if not w.done():
                w.set_exception(self._terminal())
        fut = self._stats_fut
        if fut is not None:
            self._stats_fut = None
            if not fut.done():
                fut.set_exception(self._terminal())
                fut.exception()  # an abandoned request must not log "never retrieved"
            self._pass_turn()
        if self._room is not None and not self._room.done():
            self._room.set_result(None)
        self._writer.close()

    async def _abort(self) -> None:
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except (OSError, RuntimeError):
            pass
