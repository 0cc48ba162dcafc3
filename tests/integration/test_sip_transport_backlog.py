"""A UDP socket whose send buffer fills: datagrams wait in the endpoint's backlog, in
order, and go out as the kernel takes them again; past the backlog's bound they are
dropped (and logged), never queued without limit.

The send buffer is filled for real: the test runs a child in a network namespace of its
own whose loopback has a token-bucket qdisc (tc tbf) slow enough that datagrams wait in
it, holding the sending socket's buffer, so sendto() raises BlockingIOError.  (On a plain
loopback a UDP send is delivered at once and never blocks.)  The child needs `unshare`
and `tc`; the namespace keeps the qdisc away from the other tests.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.timeout(60)

CHILD = textwrap.dedent(
    """
    import asyncio, json, logging, socket, sys
    from sipsimple.core.transport import udp

    class Receiver:  # what a UDPEndpoint hands its datagrams to (the manager's role)
        def __init__(self):
            self.got = []

        def _datagram_received(self, endpoint, data, addr):
            self.got.append(int(data[:8]))

    class Drops(logging.Handler):
        count = 0

        def emit(self, record):
            if "dropped a datagram" in record.getMessage():
                Drops.count += 1

    async def main(count, size):
        loop = asyncio.get_running_loop()
        logger = logging.getLogger("sipsimple.core.transport")
        logger.setLevel(logging.DEBUG)
        logger.addHandler(Drops())
        receiver = Receiver()
        rsock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        rsock.bind(("127.0.0.1", 0))
        inbound = udp.UDPEndpoint(receiver, rsock, loop)
        ssock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        ssock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        ssock.bind(("127.0.0.1", 0))
        outbound = udp.UDPEndpoint(receiver, ssock, loop)
        port = inbound.local[1]
        longest = 0
        for n in range(count):
            outbound.send(b"%08d" % n + b"x" * (size - 8), "127.0.0.1", port)
            longest = max(longest, len(outbound._backlog))
        held = len(outbound._backlog)
        for _ in range(300):
            if not outbound._backlog and len(receiver.got) >= count - Drops.count:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        print(json.dumps({"held": held, "longest": longest, "drops": Drops.count,
                          "left": len(outbound._backlog), "got": receiver.got,
                          "bound": udp._SEND_BACKLOG}))
        outbound.close()
        inbound.close()

    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
    """
)


def run_child(count: int, size: int, rate: str) -> dict:
    if shutil.which("unshare") is None or shutil.which("tc") is None:
        pytest.skip("needs unshare and tc (iproute2)")
    qdisc = f"tc qdisc add dev lo root tbf rate {rate} burst 4kb latency 10s"
    script = f'ip link set lo up && {qdisc} && exec {sys.executable} -c "$0" {count} {size}'
    done = subprocess.run(
        ["unshare", "-n", "sh", "-c", script, CHILD],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    if done.returncode and "qdisc" in done.stderr:
        pytest.skip(f"no tbf qdisc here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_a_full_send_buffer_holds_datagrams_in_order_until_the_kernel_takes_them():
    result = run_child(count=60, size=1000, rate="400kbit")
    assert result["held"] > 0  # the kernel refused some: the backlog took them
    assert result["drops"] == 0
    assert result["left"] == 0  # the writer drained it
    assert result["got"] == list(range(60))  # every datagram, once, in order


def test_past_its_bound_the_backlog_drops_new_datagrams_and_keeps_the_old():
    result = run_child(count=1300, size=200, rate="2mbit")
    bound = result["bound"]
    assert result["longest"] == bound
    assert result["drops"] > 0
    got = result["got"]
    assert len(got) == 1300 - result["drops"]
    assert got == list(range(len(got)))  # the newest were dropped, the rest kept their order
