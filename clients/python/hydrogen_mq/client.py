"""The blocking client: :func:`connect` returns a :class:`Client`.

A Client runs an :class:`~hydrogen_mq.aio.AsyncClient` on an event loop in
a thread of its own, so both clients share one implementation (TLS,
recognising telemetry replies, flow control) and behave the same. Its
methods may be called from any thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ssl
import threading
import weakref
from typing import Any, Awaitable, Iterator, Optional, TypeVar, Union

from . import aio
from ._options import DEFAULT_RECV_BUFFER, DEFAULT_TIMEOUT, Address
from .errors import BrokerClosedError, ClientClosedError, ConnectionEndedError
from .frame import MAX_PAYLOAD, Payload
from .stats import Stats

__all__ = ["Client", "connect"]

T = TypeVar("T")


class _LoopThread:
    """An event loop running in a daemon thread, stopped by stop()."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="hydrogen-client", daemon=True)
        self.stopped = False
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Awaitable[T]) -> T:
        fut: "concurrent.futures.Future[T]" = asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]
        try:
            return fut.result()
        except BaseException:
            fut.cancel()  # KeyboardInterrupt and the like: do not leave the call running
            raise

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.loop.call_soon_threadsafe(self.loop.stop)
        if threading.current_thread() is not self.thread:
            self.thread.join()
            self.loop.close()


def _finalize(runner: _LoopThread, inner: aio.AsyncClient) -> None:
    # A Client dropped without close(): close its socket and stop its thread.
    if not runner.stopped and runner.loop.is_running():
        asyncio.run_coroutine_threadsafe(inner.close(), runner.loop).add_done_callback(
            lambda _: runner.loop.call_soon_threadsafe(runner.loop.stop)
        )
        runner.stopped = True


def connect(
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
) -> "Client":
    """Connects to the broker at address; the arguments are those of
    :func:`hydrogen_mq.aio.connect`. Use the Client in ``with`` or call
    :meth:`Client.close`."""
    runner = _LoopThread()
    try:
        inner = runner.run(
            aio.connect(
                address,
                timeout=timeout,
                credential=credential,
                tls=tls,
                ca_file=ca_file,
                server_hostname=server_hostname,
                cert_file=cert_file,
                key_file=key_file,
                max_payload=max_payload,
                recv_buffer=recv_buffer,
            )
        )
    except BaseException:
        runner.stop()
        raise
    return Client(runner, inner)


class Client:
    """One connection to a hydrogen broker. Made by :func:`connect`."""

    def __init__(self, runner: _LoopThread, inner: aio.AsyncClient) -> None:
        self._runner = runner
        self._inner = inner
        self._close_lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _finalize, runner, inner)

    @property
    def identity(self) -> Optional[str]:
        """The identity the broker accepted the credential as; None without one."""
        return self._inner.identity

    @property
    def address(self) -> str:
        return self._inner.address

    @property
    def closed(self) -> bool:
        """True once the connection has ended, for whatever reason."""
        return self._inner.closed

    @property
    def close_reason(self) -> Optional[ConnectionEndedError]:
        """Why the connection ended, or None while it is up."""
        return self._inner.close_reason

    def _call(self, coro: Awaitable[T]) -> T:
        if self._runner.stopped:
            if asyncio.iscoroutine(coro):
                coro.close()
            raise ClientClosedError("client closed")
        return self._runner.run(coro)

    def send(self, payload: Payload) -> None:
        """Sends one message; see :meth:`AsyncClient.send`."""
        self._call(self._inner.send(payload))

    def recv(self, timeout: Optional[float] = None) -> bytes:
        """The next message, waiting up to timeout seconds; see
        :meth:`AsyncClient.recv`."""
        return self._call(self._inner.recv(timeout))

    def stats(self, span: float, timeout: Optional[float] = None) -> Stats:
        """A telemetry reading over the next span seconds; see
        :meth:`AsyncClient.stats`."""
        return self._call(self._inner.stats(span, timeout))

    def wait_closed(self) -> ConnectionEndedError:
        """Blocks until the connection ends, and returns why."""
        return self._call(self._inner.wait_closed())

    def close(self) -> None:
        """Closes the connection and stops the client's thread. Pending and
        later calls raise ClientClosedError. Calling it again does nothing."""
        with self._close_lock:
            if self._runner.stopped:
                return
            try:
                self._runner.run(self._inner.close())
            finally:
                self._finalizer.detach()
                self._runner.stop()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __iter__(self) -> Iterator[bytes]:
        """The messages as they arrive; the loop ends when the connection
        ends in order (close(), or the broker closing it between frames)
        and raises the reason when it ends otherwise."""
        while True:
            try:
                yield self.recv()
            except (ClientClosedError, BrokerClosedError):
                return
