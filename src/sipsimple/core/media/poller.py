"""Many datagram sockets behind one entry of the event loop's selector.

The loop's own readers cost, per datagram, a selector-key lookup, a Handle and a
context switch into it; an RTP socket of a call gets a datagram every 20 ms, so with
hundreds of calls that bookkeeping weighs as much as reading the datagram.  Where the
platform has epoll, the sockets of one loop go into an epoll set of their own whose
descriptor is one reader of the loop: one wake-up reads every socket that is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import weakref
from collections.abc import Callable

__all__ = ["add_reader", "remove_reader"]

logger = logging.getLogger(__name__)

_pollers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Poller] = (
    weakref.WeakKeyDictionary()
)


class _Poller:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._epoll = select.epoll()
        self._callbacks: dict[int, Callable[[], None]] = {}
        loop.add_reader(self._epoll.fileno(), self._ready)

    def add(self, fd: int, callback: Callable[[], None]) -> None:
        self._epoll.register(fd, select.EPOLLIN)
        self._callbacks[fd] = callback

    def remove(self, fd: int) -> None:
        if self._callbacks.pop(fd, None) is not None:
            with contextlib.suppress(OSError):  # closed already: the kernel dropped it
                self._epoll.unregister(fd)

    def _ready(self) -> None:
        callbacks = self._callbacks
        for fd, _events in self._epoll.poll(0):
            callback = callbacks.get(fd)
            if callback is None:  # removed by an earlier callback of this round
                continue
            try:
                callback()
            except Exception as exc:
                self._loop.call_exception_handler(
                    {"message": "a datagram reader failed", "exception": exc}
                )


def add_reader(loop: asyncio.AbstractEventLoop, fd: int, callback: Callable[[], None]) -> None:
    """Call ``callback`` whenever ``fd`` is readable (as loop.add_reader() would)."""
    if not hasattr(select, "epoll"):
        loop.add_reader(fd, callback)
        return
    poller = _pollers.get(loop)
    if poller is None:
        poller = _pollers[loop] = _Poller(loop)
    poller.add(fd, callback)


def remove_reader(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    """Stop watching ``fd``; call it before closing the socket."""
    poller = _pollers.get(loop)
    if poller is None:
        loop.remove_reader(fd)
    else:
        poller.remove(fd)
