"""DNSLookup, DNSManager and Route against a small DNS server on 127.0.0.1.

The server here is real DNS over loopback UDP (dnspython builds the answers) so the
tests can count queries and make a nameserver fail on purpose. RFC 3263 selection
against a real third-party server is in tests/interop/test_lookup_dnsmasq.py.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import random
from dataclasses import dataclass, field

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

import sipsimple.core
from sipsimple.lookup import (
    DNSLookup,
    DNSLookupError,
    DNSManager,
    SRVRecord,
    order_srv_records,
)
from sipsimple.notification import NotificationCenter
from sipsimple.threading import SIPThread
from sipsimple.util import Route


@dataclass
class URI:
    """The shape of a SIPURI that the lookups read."""

    host: str
    port: int | None = None
    secure: bool = False
    parameters: dict = field(default_factory=dict)


class LoopbackDNSServer(asyncio.DatagramProtocol):
    """Answers from a dict of {(name, type): (ttl, [rdata text])}; counts the queries.

    ``mode`` "answer" answers (NXDOMAIN for unknown names, NODATA for known names
    without that type), "servfail" answers SERVFAIL, "silent" never answers.
    ``glue`` adds records to the additional section; ``soa_minimum`` adds an SOA to
    negative answers.
    """

    def __init__(self, records, *, mode="answer", glue=(), soa_minimum=None):
        self.records = records
        self.mode = mode
        self.glue = list(glue)
        self.soa_minimum = soa_minimum
        self.queries: list[tuple[str, str]] = []
        self.transport = None

    async def start(self, address="127.0.0.1", port=0) -> LoopbackDNSServer:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=(address, port)
        )
        return self

    @property
    def nameserver(self) -> str:
        address, port = self.transport.get_extra_info("sockname")[:2]
        return f"{address}:{port}"

    @property
    def port(self) -> int:
        return self.transport.get_extra_info("sockname")[1]

    def close(self):
        self.transport.close()

    def datagram_received(self, data, addr):
        query = dns.message.from_wire(data)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self.queries.append((name, rdtype))
        if self.mode == "silent":
            return
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if self.mode == "servfail":
            response.set_rcode(dns.rcode.SERVFAIL)
        elif (name, rdtype) in self.records:
            ttl, values = self.records[name, rdtype]
            response.answer.append(
                dns.rrset.from_text_list(question.name, ttl, "IN", rdtype, values)
            )
            for owner, ttl, glue_type, value in self.glue:
                response.additional.append(
                    dns.rrset.from_text_list(owner, ttl, "IN", glue_type, [value])
                )
        else:
            if not any(known == name for known, _ in self.records):
                response.set_rcode(dns.rcode.NXDOMAIN)
            if self.soa_minimum is not None:
                soa = f"ns.test. admin.test. 1 60 60 60 {self.soa_minimum}"
                response.authority.append(dns.rrset.from_text_list("test.", 60, "IN", "SOA", [soa]))
        self.transport.sendto(response.to_wire(), addr)


@pytest.fixture
async def manager(monkeypatch):
    """A fresh DNSManager whose nameservers are all on 127.0.0.1 and an empty cache."""
    monkeypatch.setattr(DNSManager, "_instance", None)
    DNSLookup.cache.flush()
    manager = DNSManager()
    manager.system_nameservers = ["127.0.0.1:1"]
    manager.fallback_nameservers = []
    yield manager
    manager.stop()
    await asyncio.sleep(0.01)  # let the probing task see its cancellation
    DNSLookup.cache.flush()


@pytest.fixture
def notifications():
    received = []
    center = NotificationCenter()
    center.add_observer(received.append)
    yield received
    center.remove_observer(received.append)


def named(notifications, name):
    return [n for n in notifications if n.name == name]


SIP_RECORDS = {
    ("_sip._udp.example.test", "SRV"): (60, ["10 10 5060 sip.example.test."]),
    ("sip.example.test", "A"): (60, ["127.0.0.10"]),
}


# Route


def test_route_validates_and_normalizes_its_attributes():
    route = Route("127.0.0.1", port=5061, transport="TLS")
    assert (route.address, route.port, route.transport) == ("127.0.0.1", 5061, "tls")
    assert Route("::1").port is None and Route("::1").transport == "udp"
    assert route == Route("127.0.0.1", 5061, "tls") and route != Route("127.0.0.1", 5061)
    assert repr(route) == "Route(address='127.0.0.1', port=5061, transport='tls')"
    route.transport = "tcp"
    assert route.transport == "tcp"
    for bad in (
        lambda: Route("sip.example.com"),
        lambda: Route("127.0.0.1", port=0),
        lambda: Route("127.0.0.1", port=True),
        lambda: Route("127.0.0.1", transport="sctp"),
    ):
        with pytest.raises(ValueError):
            bad()


def test_route_get_uri():
    if not hasattr(sipsimple.core, "SIPURI"):
        pytest.skip("sipsimple.core.SIPURI is not merged on this branch yet")
    uri = Route("127.0.0.1", port=1234, transport="tls").get_uri()
    assert (uri.host, uri.port, uri.parameters["transport"]) == ("127.0.0.1", 1234, "tls")


# SRV ordering (RFC 2782)


def test_srv_records_are_ordered_by_priority_then_weighted_random():
    records = [
        SRVRecord(20, 100, 1, "backup"),
        SRVRecord(10, 10, 1, "light"),
        SRVRecord(10, 30, 1, "medium"),
        SRVRecord(10, 60, 1, "heavy"),
    ]
    rng = random.Random(3263)
    firsts = collections.Counter()
    for _ in range(6000):
        ordered = order_srv_records(records, rng)
        assert ordered[-1].target == "backup"
        assert sorted(r.target for r in ordered[:3]) == ["heavy", "light", "medium"]
        firsts[ordered[0].target] += 1
    # Expected shares 1/10, 3/10, 6/10 (the draw is 0..sum, so within a percent).
    assert abs(firsts["light"] / 6000 - 0.10) < 0.02
    assert abs(firsts["medium"] / 6000 - 0.30) < 0.03
    assert abs(firsts["heavy"] / 6000 - 0.60) < 0.03


def test_zero_weight_records_come_first_only_on_a_zero_draw():
    records = [SRVRecord(1, 9, 1, "weighted"), SRVRecord(1, 0, 1, "zero")]
    rng = random.Random(7)
    firsts = collections.Counter(order_srv_records(records, rng)[0].target for _ in range(5000))
    assert abs(firsts["zero"] / 5000 - 0.10) < 0.02
    all_zero = [SRVRecord(1, 0, 1, "a"), SRVRecord(1, 0, 1, "b")]
    assert [r.target for r in order_srv_records(all_zero, rng)] == ["a", "b"]


# Arguments


def test_arguments_are_checked_at_once():
    lookup = DNSLookup()
    with pytest.raises(ValueError, match="supported_transports"):
        lookup.lookup_sip_proxy(URI("example.test"), ["udp", "sctp"])
    with pytest.raises(ValueError, match="supported_transports"):
        lookup.lookup_sip_proxy(URI("example.test"), [])
    with pytest.raises(TypeError):
        lookup.lookup_sip_proxy(URI("example.test"), "udp")
    with pytest.raises(ValueError, match="service"):
        lookup.lookup_service(URI("example.test"), "turn")
    with pytest.raises(ValueError, match="positive"):
        lookup.lookup_xcap_server(URI("example.test"), timeout=0)
    with pytest.raises(ValueError, match="not a valid domain name"):
        lookup.lookup_xcap_server(URI("a..b"))
    with pytest.raises(RuntimeError, match="SIP thread"):
        lookup.lookup_xcap_server(URI("example.test"))


@pytest.mark.parametrize("text", ["sip.example.test", "127.0.0.1:x", "[::1]5", "127.0.0.1:0"])
async def test_nameservers_must_be_addresses(manager, text):
    manager.fallback_nameservers = [text]
    with pytest.raises(ValueError):
        manager.start()


# Results, notifications and traces


async def test_result_is_both_awaited_and_notified(manager, notifications):
    server = await LoopbackDNSServer(SIP_RECORDS).start()
    manager.system_nameservers = [server.nameserver]
    lookup = DNSLookup()
    routes = await lookup.lookup_sip_proxy(URI("example.test"), ["udp"])
    assert routes == [Route("127.0.0.10", 5060, "udp")]
    [success] = named(notifications, "DNSLookupDidSucceed")
    assert success.sender is lookup and success.data.result == routes
    assert success.data.timestamp.tzinfo is not None
    traces = named(notifications, "DNSLookupTrace")
    assert [(t.data.query_type, t.data.query_name) for t in traces] == [
        ("NS", "example.test"),
        ("NAPTR", "example.test"),
        ("SRV", "_sip._udp.example.test"),
        ("A", "sip.example.test"),
        ("AAAA", "sip.example.test"),
    ]
    srv = traces[2].data
    assert srv.answer.rrset[0].port == 5060 and srv.error is None
    assert srv.context == "lookup_sip_proxy" and srv.uri == URI("example.test")
    assert srv.nameservers == [server.nameserver] and not hasattr(srv, "service")
    assert traces[0].data.answer is None and isinstance(traces[0].data.error, Exception)
    server.close()


async def test_a_lookup_from_another_thread_runs_on_the_sip_thread(manager, notifications):
    server = await LoopbackDNSServer(SIP_RECORDS).start()
    manager.system_nameservers = [server.nameserver]
    SIPThread().start()
    try:
        lookup = DNSLookup()
        future = await asyncio.to_thread(lookup.lookup_sip_proxy, URI("example.test"), ["udp"])
        assert isinstance(future, concurrent.futures.Future)
        assert await asyncio.wrap_future(future) == [Route("127.0.0.10", 5060, "udp")]
        [success] = named(notifications, "DNSLookupDidSucceed")
        assert success.sender is lookup
        failing = lookup.lookup_xcap_server(URI("example.test"))  # from this loop: not the SIP one
        with pytest.raises(DNSLookupError):
            await asyncio.wrap_future(failing)
    finally:
        await asyncio.to_thread(SIPThread().stop)
        server.close()


async def test_service_traces_name_the_service(manager, notifications):
    server = await LoopbackDNSServer(
        {
            ("_stun._udp.example.test", "SRV"): (60, ["0 0 3479 stun.example.test."]),
            ("stun.example.test", "A"): (60, ["127.0.0.20"]),
        }
    ).start()
    manager.system_nameservers = [server.nameserver]
    result = await DNSLookup().lookup_service(URI("example.test"), "stun")
    assert result == [("127.0.0.20", 3479)]
    traces = named(notifications, "DNSLookupTrace")
    assert {t.data.service for t in traces} == {"stun"}
    assert {t.data.context for t in traces} == {"lookup_service"}
    server.close()


async def test_failure_is_raised_and_notified(manager, notifications):
    server = await LoopbackDNSServer({}).start()
    manager.system_nameservers = [server.nameserver]
    lookup = DNSLookup()
    with pytest.raises(
        DNSLookupError, match=r"no SIP proxy found for gone\.test: gone\.test does not"
    ):
        await lookup.lookup_sip_proxy(URI("gone.test"), ["udp", "tcp"])
    [failure] = named(notifications, "DNSLookupDidFail")
    assert failure.sender is lookup and "gone.test does not exist" in failure.data.error
    server.close()


async def test_an_unawaited_failure_is_only_notified(manager, notifications):
    server = await LoopbackDNSServer({}).start()
    manager.system_nameservers = [server.nameserver]
    task = DNSLookup().lookup_xcap_server(URI("example.test"))
    await asyncio.wait([task])
    [failure] = named(notifications, "DNSLookupDidFail")
    assert failure.data.error.startswith("no XCAP server found for example.test")
    server.close()


async def test_a_cancelled_lookup_says_so(manager, notifications):
    server = await LoopbackDNSServer({}, mode="silent").start()
    manager.system_nameservers = [server.nameserver]
    task = DNSLookup().lookup_xcap_server(URI("example.test"))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [failure] = named(notifications, "DNSLookupDidFail")
    assert failure.data.error == "the lookup was cancelled"
    server.close()


async def test_a_silent_nameserver_fails_the_lookup_within_its_lifetime(manager, notifications):
    server = await LoopbackDNSServer({}, mode="silent").start()
    manager.system_nameservers = [server.nameserver]
    task = DNSLookup().lookup_sip_proxy(URI("example.test"), ["udp"], timeout=0.1, lifetime=0.3)
    with pytest.raises(
        DNSLookupError, match=r"no nameserver answered .* in time \(lifetime 0\.3 s"
    ):
        await asyncio.wait_for(task, 5)
    server.close()


# Cache


async def test_answers_are_cached_for_their_ttl_only(manager):
    server = await LoopbackDNSServer(
        {
            ("xcap.cached.test", "TXT"): (60, ['"https://xcap.cached.test/"']),
            ("xcap.fresh.test", "TXT"): (0, ['"https://xcap.fresh.test/"']),
        }
    ).start()
    manager.system_nameservers = [server.nameserver]
    for _ in range(3):
        assert await DNSLookup().lookup_xcap_server(URI("cached.test")) == [
            "https://xcap.cached.test/"
        ]
        await DNSLookup().lookup_xcap_server(URI("fresh.test"))
    asked = collections.Counter(server.queries)
    assert asked["xcap.cached.test", "TXT"] == 1
    assert asked["xcap.fresh.test", "TXT"] == 3
    server.close()


@pytest.mark.parametrize(("soa_minimum", "expected_queries"), [(None, 2), (60, 1)])
async def test_negative_answers_are_cached_only_with_an_soa(manager, soa_minimum, expected_queries):
    server = await LoopbackDNSServer({}, soa_minimum=soa_minimum).start()
    manager.system_nameservers = [server.nameserver]
    for _ in range(2):
        with pytest.raises(DNSLookupError):
            await DNSLookup().lookup_xcap_server(URI("none.test"))
    assert collections.Counter(server.queries)["xcap.none.test", "TXT"] == expected_queries
    server.close()


# Authoritative nameservers (NS records)


async def test_authoritative_nameservers_from_ns_glue_are_used(manager, notifications):
    authoritative = await LoopbackDNSServer(
        {("xcap.auth.test", "TXT"): (0, ['"http://xcap.auth.test/root"'])}
    ).start(address="127.0.0.2")
    local = await LoopbackDNSServer(
        {("auth.test", "NS"): (0, ["ns1.auth.test."])},
        glue=[("ns1.auth.test.", 0, "A", "127.0.0.2")],
    ).start(port=authoritative.port)
    manager.system_nameservers = [local.nameserver]
    manager.authoritative_port = authoritative.port
    assert await DNSLookup().lookup_xcap_server(URI("auth.test")) == ["http://xcap.auth.test/root"]
    assert authoritative.queries == [("xcap.auth.test", "TXT")]
    assert local.queries == [("auth.test", "NS")]
    [txt] = [t for t in named(notifications, "DNSLookupTrace") if t.data.query_type == "TXT"]
    assert txt.data.nameservers == [authoritative.nameserver]
    local.close()
    authoritative.close()


async def test_a_failing_authoritative_nameserver_falls_back_to_the_local_one(manager):
    authoritative = await LoopbackDNSServer({}, mode="servfail").start(address="127.0.0.2")
    local = await LoopbackDNSServer(
        {
            ("auth.test", "NS"): (0, ["ns1.auth.test."]),
            ("ns1.auth.test", "A"): (0, ["127.0.0.2"]),
            ("xcap.auth.test", "TXT"): (0, ['"https://local.test/"']),
        }
    ).start(port=authoritative.port)
    manager.system_nameservers = [local.nameserver]
    manager.authoritative_port = authoritative.port
    assert await DNSLookup().lookup_xcap_server(URI("auth.test")) == ["https://local.test/"]
    assert ("xcap.auth.test", "TXT") in authoritative.queries
    assert ("ns1.auth.test", "A") in local.queries
    local.close()
    authoritative.close()


async def test_a_silent_authoritative_nameserver_is_dropped_after_one_timeout(manager):
    authoritative = await LoopbackDNSServer({}, mode="silent").start(address="127.0.0.2")
    local = await LoopbackDNSServer(
        {
            ("auth.test", "NS"): (0, ["ns1.auth.test."]),
            ("_sip._udp.auth.test", "SRV"): (0, ["0 0 5060 sip.auth.test."]),
            ("sip.auth.test", "A"): (0, ["127.0.0.9"]),
        },
        glue=[("ns1.auth.test.", 0, "A", "127.0.0.2")],
    ).start(port=authoritative.port)
    manager.system_nameservers = [local.nameserver]
    manager.authoritative_port = authoritative.port
    task = DNSLookup().lookup_sip_proxy(URI("auth.test"), ["udp"], timeout=0.2, lifetime=10)
    assert await asyncio.wait_for(task, 5) == [Route("127.0.0.9", 5060, "udp")]
    assert authoritative.queries == [("auth.test", "NAPTR")]
    local.close()
    authoritative.close()


# DNSManager


PROBE_RECORDS = {
    ("probe.test", "NAPTR"): (0, ['10 10 "s" "SIP+D2U" "" _sip._udp.probe.test.']),
    ("_sip._udp.probe.test", "SRV"): (0, ["0 0 5060 sip.probe.test."]),
}


def configure_probe(manager, local, fallback):
    manager.system_nameservers = [local.nameserver]
    manager.fallback_nameservers = [fallback.nameserver]
    manager.probe_domain = "probe.test"
    manager.probe_timeout = 0.1
    manager.probe_lifetime = 0.2
    manager.probe_interval = 0.2


async def next_notification(notifications, name, count=1):
    for _ in range(500):
        found = named(notifications, name)
        if len(found) >= count:
            return found[count - 1]
        await asyncio.sleep(0.01)
    raise AssertionError(f"no {name} notification")


async def test_manager_prefers_working_local_nameservers(manager, notifications):
    local = await LoopbackDNSServer(PROBE_RECORDS).start()
    fallback = await LoopbackDNSServer(PROBE_RECORDS).start()
    configure_probe(manager, local, fallback)
    assert manager.nameservers is None
    manager.start()
    initialized = await next_notification(notifications, "DNSResolverDidInitialize")
    assert initialized.sender is manager and initialized.data.nameservers == [local.nameserver]
    assert manager.nameservers == [local.nameserver] and fallback.queries == []
    assert local.queries == [("probe.test", "NAPTR"), ("_sip._udp.probe.test", "SRV")]
    with pytest.raises(RuntimeError):
        manager.start()
    local.close()
    fallback.close()


async def test_manager_falls_back_and_returns_to_local_nameservers(manager, notifications):
    local = await LoopbackDNSServer({}).start()
    fallback = await LoopbackDNSServer(PROBE_RECORDS).start()
    configure_probe(manager, local, fallback)
    manager.start()
    initialized = await next_notification(notifications, "DNSResolverDidInitialize")
    assert initialized.data.nameservers == [fallback.nameserver]
    local.records = PROBE_RECORDS  # the local nameserver recovers; the next probe sees it
    changed = await next_notification(notifications, "DNSNameserversDidChange")
    assert changed.data.nameservers == [local.nameserver]
    assert manager.nameservers == [local.nameserver]
    local.close()
    fallback.close()


async def test_manager_keeps_local_nameservers_when_nothing_answers(manager, notifications):
    local = await LoopbackDNSServer({}, mode="silent").start()
    fallback = await LoopbackDNSServer({}, mode="servfail").start()
    configure_probe(manager, local, fallback)
    manager.start()
    initialized = await next_notification(notifications, "DNSResolverDidInitialize")
    assert initialized.data.nameservers == [local.nameserver]
    for _ in range(500):  # probed again, probe_interval later
        if fallback.queries.count(("probe.test", "NAPTR")) >= 2:
            break
        await asyncio.sleep(0.01)
    assert fallback.queries.count(("probe.test", "NAPTR")) >= 2
    assert named(notifications, "DNSNameserversDidChange") == []
    local.close()
    fallback.close()


async def test_lookups_use_the_probed_nameservers(manager):
    local = await LoopbackDNSServer({}).start()
    fallback = await LoopbackDNSServer({**PROBE_RECORDS, **SIP_RECORDS}).start()
    configure_probe(manager, local, fallback)
    manager.probe_interval = 60
    manager.start()
    while manager.nameservers is None:
        await asyncio.sleep(0.01)
    routes = await DNSLookup().lookup_sip_proxy(URI("example.test"), ["udp"])
    assert routes == [Route("127.0.0.10", 5060, "udp")]
    assert ("_sip._udp.example.test", "SRV") in fallback.queries
    manager.probe()
    local.close()
    fallback.close()
