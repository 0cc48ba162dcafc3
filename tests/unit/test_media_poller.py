"""The datagram poller: many sockets behind one reader of the loop."""

from __future__ import annotations

import asyncio
import select
import socket

import pytest

from sipsimple.core.media import poller


def _sockets(count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        sockets.append(sock)
    return sockets


def _reader(sock: socket.socket, got: list[tuple[int, bytes]], index: int):
    def readable() -> None:
        got.append((index, sock.recv(2048)))

    return readable


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0.01)


async def test_one_loop_reader_serves_every_socket() -> None:
    loop = asyncio.get_running_loop()
    readers_before = len(loop._selector.get_map())  # type: ignore[attr-defined]
    sockets = _sockets(5)
    got: list[tuple[int, bytes]] = []
    for index, sock in enumerate(sockets):
        poller.add_reader(loop, sock.fileno(), _reader(sock, got, index))
    added = len(loop._selector.get_map()) - readers_before  # type: ignore[attr-defined]
    sender = _sockets(1)[0]
    for index, sock in enumerate(sockets):
        for round_ in range(2):  # two datagrams waiting: both are read, in later rounds
            sender.sendto(bytes([index, round_]), sock.getsockname())
    await _settle()
    assert sorted(got) == [(i, bytes([i, r])) for i in range(5) for r in range(2)]
    if hasattr(select, "epoll"):
        assert added <= 1  # the poller's own descriptor (none if an earlier test made it)
    for sock in (*sockets, sender):
        poller.remove_reader(loop, sock.fileno())
        sock.close()


async def test_a_reader_removed_during_a_round_is_not_called() -> None:
    loop = asyncio.get_running_loop()
    first, second = _sockets(2)
    got: list[str] = []

    def read_first() -> None:
        first.recv(2048)
        got.append("first")
        poller.remove_reader(loop, first.fileno())
        poller.remove_reader(loop, second.fileno())

    def read_second() -> None:
        second.recv(2048)
        got.append("second")
        poller.remove_reader(loop, first.fileno())
        poller.remove_reader(loop, second.fileno())

    poller.add_reader(loop, first.fileno(), read_first)
    poller.add_reader(loop, second.fileno(), read_second)
    sender = _sockets(1)[0]
    sender.sendto(b"x", first.getsockname())
    sender.sendto(b"y", second.getsockname())
    await _settle()
    assert len(got) == 1  # whichever came first removed the other
    for sock in (first, second, sender):
        sock.close()


async def test_a_failing_reader_is_reported_and_the_others_still_run() -> None:
    loop = asyncio.get_running_loop()
    failing, working = _sockets(2)
    errors: list[dict] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    got: list[bytes] = []

    def fail() -> None:
        failing.recv(2048)
        raise RuntimeError("broken reader")

    poller.add_reader(loop, failing.fileno(), fail)
    poller.add_reader(loop, working.fileno(), lambda: got.append(working.recv(2048)))
    sender = _sockets(1)[0]
    for _ in range(3):
        sender.sendto(b"a", failing.getsockname())
        sender.sendto(b"b", working.getsockname())
    await _settle()
    assert got == [b"b"] * 3
    assert len(errors) == 3
    assert errors[0]["message"] == "a datagram reader failed"
    assert isinstance(errors[0]["exception"], RuntimeError)
    for sock in (failing, working, sender):
        poller.remove_reader(loop, sock.fileno())
        sock.close()


async def test_removing_a_closed_socket_and_an_unknown_fd_is_harmless() -> None:
    loop = asyncio.get_running_loop()
    (sock,) = _sockets(1)
    fd = sock.fileno()
    poller.add_reader(loop, fd, lambda: None)
    sock.close()  # the kernel drops it from the epoll set
    poller.remove_reader(loop, fd)
    (other,) = _sockets(1)  # may reuse the number: it can be added again
    got: list[bytes] = []
    poller.add_reader(loop, other.fileno(), lambda: got.append(other.recv(2048)))
    sender = _sockets(1)[0]
    sender.sendto(b"z", other.getsockname())
    await _settle()
    assert got == [b"z"]
    poller.remove_reader(loop, other.fileno())
    other.close()
    sender.close()


async def test_without_epoll_the_loop_reads_the_socket_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(select, "epoll", raising=False)
    monkeypatch.setattr(poller, "_pollers", type(poller._pollers)())
    loop = asyncio.get_running_loop()
    (sock,) = _sockets(1)
    got: list[bytes] = []
    poller.add_reader(loop, sock.fileno(), lambda: got.append(sock.recv(2048)))
    assert sock.fileno() in loop._selector.get_map()  # type: ignore[attr-defined]
    sender = _sockets(1)[0]
    sender.sendto(b"q", sock.getsockname())
    await _settle()
    assert got == [b"q"]
    poller.remove_reader(loop, sock.fileno())
    assert sock.fileno() not in loop._selector.get_map()  # type: ignore[attr-defined]
    sock.close()
    sender.close()
