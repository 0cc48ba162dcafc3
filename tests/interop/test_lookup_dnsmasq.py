"""sipsimple.lookup against dnsmasq serving NAPTR/SRV/A/AAAA/TXT/NS records on loopback.

Run inside a loopback-only network namespace (``unshare -n``, then ``ip link set lo up``).
"""

from __future__ import annotations

import asyncio
import collections
import random
import socket
from dataclasses import dataclass, field

import pytest
from tests.interop.dnsmasq import Dnsmasq, free_port

from sipsimple.lookup import DNSLookup, DNSLookupError, DNSManager
from sipsimple.notification import NotificationCenter
from sipsimple.util import Route

pytestmark = pytest.mark.interop


@dataclass
class URI:
    """The shape of a SIPURI that the lookups read."""

    host: str
    port: int | None = None
    secure: bool = False
    parameters: dict = field(default_factory=dict)


@pytest.fixture
async def manager(monkeypatch):
    monkeypatch.setattr(DNSManager, "_instance", None)
    DNSLookup.cache.flush()
    manager = DNSManager()
    manager.system_nameservers = ["127.0.0.1:1"]
    manager.fallback_nameservers = []
    yield manager
    manager.stop()
    await asyncio.sleep(0.01)
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


def query_types(notifications):
    return [n.data.query_type for n in named(notifications, "DNSLookupTrace")]


@pytest.fixture
def serve(manager):
    """Start dnsmasq with the given records and make it the local nameserver."""
    servers = []

    def start(records, **options):
        server = Dnsmasq(records, **options)
        server.start()
        servers.append(server)
        manager.system_nameservers = [server.nameserver]
        return server

    yield start
    for server in servers:
        server.stop()


HOSTS = [
    "--host-record=udp1.example.test,127.0.0.11",
    "--host-record=udp2.example.test,127.0.0.12",
    "--host-record=tcp1.example.test,127.0.0.21,::21",
    "--host-record=tls1.example.test,127.0.0.31",
]
SRV = [
    "--srv-host=_sip._udp.example.test,udp1.example.test,5060,10,0",
    "--srv-host=_sip._udp.example.test,udp2.example.test,5070,20,0",
    "--srv-host=_sip._tcp.example.test,tcp1.example.test,5062,10,0",
    "--srv-host=_sips._tcp.example.test,tls1.example.test,5063,10,0",
]
NAPTR = [
    "--naptr-record=example.test,10,20,s,SIP+D2U,,_sip._udp.example.test",
    "--naptr-record=example.test,10,10,S,sip+d2t,,_sip._tcp.example.test",
    "--naptr-record=example.test,20,5,s,SIPS+D2T,,_sips._tcp.example.test",
    # Not for us: another flag, an unsupported transport (SCTP).
    "--naptr-record=example.test,1,1,u,SIP+D2U,!^.*$!sip:info@example.test!",
    "--naptr-record=example.test,1,1,s,SIP+D2S,,_sip._sctp.example.test",
]
UDP = [Route("127.0.0.11", 5060, "udp"), Route("127.0.0.12", 5070, "udp")]
TCP = [Route("127.0.0.21", 5062, "tcp"), Route("::21", 5062, "tcp")]
TLS = [Route("127.0.0.31", 5063, "tls")]


# RFC 3263 selection


async def test_naptr_order_then_preference_give_the_route_order(serve, notifications):
    serve(NAPTR + SRV + HOSTS)
    lookup = DNSLookup()
    routes = await lookup.lookup_sip_proxy(URI("example.test"), ["udp", "tcp", "tls"])
    # Failover order: the SRV targets of each NAPTR record in turn, by SRV priority.
    assert routes == TCP + UDP + TLS
    [success] = named(notifications, "DNSLookupDidSucceed")
    assert success.sender is lookup and success.data.result == routes


@pytest.mark.parametrize(
    ("supported", "expected"),
    [(["udp"], UDP), (["tls", "udp"], UDP + TLS), (["tcp"], TCP)],
)
async def test_naptr_records_of_unsupported_transports_are_skipped(serve, supported, expected):
    serve(NAPTR + SRV + HOSTS)
    assert await DNSLookup().lookup_sip_proxy(URI("example.test"), supported) == expected


async def test_naptr_records_of_equal_rank_follow_the_supported_transports(serve):
    serve(
        [
            "--naptr-record=example.test,10,10,s,SIP+D2U,,_sip._udp.example.test",
            "--naptr-record=example.test,10,10,s,SIP+D2T,,_sip._tcp.example.test",
            *SRV,
            *HOSTS,
        ]
    )
    lookup = DNSLookup()
    assert await lookup.lookup_sip_proxy(URI("example.test"), ["tcp", "udp"]) == TCP + UDP
    assert await lookup.lookup_sip_proxy(URI("example.test"), ["udp", "tcp"]) == UDP + TCP


async def test_sips_uses_tls_only(serve, notifications):
    serve(NAPTR + SRV + HOSTS)
    lookup = DNSLookup()
    assert (
        await lookup.lookup_sip_proxy(URI("example.test", secure=True), ["udp", "tcp", "tls"])
        == TLS
    )
    tcp = URI("example.test", secure=True, parameters={"transport": "tcp"})
    assert await lookup.lookup_sip_proxy(tcp, ["tls"]) == TLS
    with pytest.raises(DNSLookupError, match="sips URI needs TLS"):
        await lookup.lookup_sip_proxy(URI("example.test", secure=True), ["udp", "tcp"])
    udp = URI("example.test", secure=True, parameters={"transport": "udp"})
    with pytest.raises(DNSLookupError, match="sips URI cannot use transport=udp"):
        await lookup.lookup_sip_proxy(udp, ["udp", "tls"])
    errors = [n.data.error for n in named(notifications, "DNSLookupDidFail")]
    assert len(errors) == 2 and "TLS" in errors[0]


async def test_srv_without_naptr_follows_supported_transports_and_priorities(serve, notifications):
    serve(SRV + HOSTS)
    routes = await DNSLookup().lookup_sip_proxy(URI("example.test"), ["tcp", "udp"])
    assert routes == TCP + UDP
    assert (
        query_types(notifications)
        == ["NS", "NAPTR", "SRV", "A", "AAAA", "SRV"]
        + [
            "A",
            "AAAA",
        ]
        * 2
    )


async def test_srv_weights_share_out_the_first_route(serve):
    serve(
        [
            "--srv-host=_sip._udp.weights.test,light.weights.test,5060,10,10",
            "--srv-host=_sip._udp.weights.test,medium.weights.test,5060,10,30",
            "--srv-host=_sip._udp.weights.test,heavy.weights.test,5060,10,60",
            "--srv-host=_sip._udp.weights.test,backup.weights.test,5060,20,100",
            "--host-record=light.weights.test,127.0.1.1",
            "--host-record=medium.weights.test,127.0.1.2",
            "--host-record=heavy.weights.test,127.0.1.3",
            "--host-record=backup.weights.test,127.0.1.4",
        ],
        local_ttl=300,  # cached after the first lookup: the draws are ours, not dnsmasq's
    )
    lookup = DNSLookup(rng=random.Random(2782))
    firsts = collections.Counter()
    for _ in range(300):
        routes = await lookup.lookup_sip_proxy(URI("weights.test"), ["udp"])
        assert routes[-1].address == "127.0.1.4" and len(routes) == 4
        firsts[routes[0].address] += 1
    # Expected shares 0.1, 0.3, 0.6; the bounds are three standard deviations.
    assert abs(firsts["127.0.1.1"] / 300 - 0.1) < 0.06
    assert abs(firsts["127.0.1.2"] / 300 - 0.3) < 0.08
    assert abs(firsts["127.0.1.3"] / 300 - 0.6) < 0.09


@pytest.mark.parametrize(
    ("uri", "supported", "expected"),
    [
        (URI("plain.example.test"), ["tls", "tcp", "udp"], "udp 5060"),
        (URI("plain.example.test"), ["tls", "tcp"], "tcp 5060"),
        (URI("plain.example.test", secure=True), ["udp", "tls"], "tls 5061"),
        (URI("plain.example.test", parameters={"transport": "TCP"}), ["udp", "tcp"], "tcp 5060"),
    ],
)
async def test_a_and_aaaa_records_when_there_is_no_naptr_or_srv(serve, uri, supported, expected):
    serve(["--host-record=plain.example.test,127.0.0.40,::40"])
    transport, port = expected.split()
    assert await DNSLookup().lookup_sip_proxy(uri, supported) == [
        Route("127.0.0.40", int(port), transport),
        Route("::40", int(port), transport),
    ]


async def test_an_explicit_port_skips_naptr_and_srv(serve, notifications):
    serve(NAPTR + SRV + HOSTS + ["--host-record=example.test,127.0.0.50"])
    lookup = DNSLookup()
    assert await lookup.lookup_sip_proxy(URI("example.test", port=5080), ["tcp", "udp"]) == [
        Route("127.0.0.50", 5080, "udp")
    ]
    tls = URI("example.test", port=5081, parameters={"transport": "tls"})
    assert await lookup.lookup_sip_proxy(tls, ["udp", "tls"]) == [Route("127.0.0.50", 5081, "tls")]
    assert set(query_types(notifications)) == {"A", "AAAA"}


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (URI("127.0.0.5"), Route("127.0.0.5", 5060, "udp")),
        (URI("127.0.0.5", secure=True), Route("127.0.0.5", 5061, "tls")),
        (URI("[::1]", port=5070, parameters={"transport": "tcp"}), Route("::1", 5070, "tcp")),
    ],
)
async def test_an_ip_address_needs_no_dns(serve, notifications, uri, expected):
    serve([])
    assert await DNSLookup().lookup_sip_proxy(uri, ["udp", "tcp", "tls"]) == [expected]
    assert query_types(notifications) == []


async def test_a_transport_parameter_asks_srv_of_that_transport_only(serve, notifications):
    serve(NAPTR + SRV + HOSTS)
    lookup = DNSLookup()
    uri = URI("example.test", parameters={"transport": "tcp"})
    assert await lookup.lookup_sip_proxy(uri, ["udp", "tcp"]) == TCP
    traces = [
        (n.data.query_type, n.data.query_name) for n in named(notifications, "DNSLookupTrace")
    ]
    assert ("NAPTR", "example.test") not in traces
    assert [name for kind, name in traces if kind == "SRV"] == ["_sip._tcp.example.test"]
    with pytest.raises(DNSLookupError, match="transport=tcp of the URI is not a supported"):
        await lookup.lookup_sip_proxy(uri, ["udp"])


# Services and XCAP


async def test_stun_and_msrp_relay_servers_from_srv(serve):
    serve(
        [
            "--srv-host=_stun._udp.example.test,stun.example.test,3479,10,0",
            "--srv-host=_msrps._tcp.example.test,relay.example.test,2856,10,0",
            "--srv-host=_msrps._tcp.example.test,relay2.example.test,2857,20,0",
            "--host-record=stun.example.test,127.0.0.60",
            "--host-record=relay.example.test,127.0.0.61",
            "--host-record=relay2.example.test,127.0.0.62",
            "--host-record=nosrv.example.test,127.0.0.63",
        ]
    )
    lookup = DNSLookup()
    assert await lookup.lookup_service(URI("example.test"), "stun") == [("127.0.0.60", 3479)]
    assert await lookup.lookup_service(URI("example.test"), "msrprelay") == [
        ("127.0.0.61", 2856),
        ("127.0.0.62", 2857),
    ]
    # Without SRV records: the host's address and the service's default port.
    assert await lookup.lookup_service(URI("nosrv.example.test"), "stun") == [("127.0.0.63", 3478)]
    assert await lookup.lookup_service(URI("nosrv.example.test"), "msrprelay") == [
        ("127.0.0.63", 2855)
    ]


async def test_xcap_root_from_txt_records(serve, notifications):
    serve(
        [
            "--txt-record=xcap.example.test,https://xcap.example.test/xcap-root",
            "--txt-record=xcap.example.test,http://127.0.0.70:8080/xcap",
            "--txt-record=xcap.example.test,v=spf1 -all",
            "--txt-record=xcap.example.test,ftp://files.example.test/",
            "--txt-record=xcap.nohttp.test,just text",
        ]
    )
    lookup = DNSLookup()
    assert sorted(await lookup.lookup_xcap_server(URI("example.test"))) == [
        "http://127.0.0.70:8080/xcap",
        "https://xcap.example.test/xcap-root",
    ]
    with pytest.raises(DNSLookupError, match="hold no http"):
        await lookup.lookup_xcap_server(URI("nohttp.test"))
    assert [n.data.query_name for n in named(notifications, "DNSLookupTrace")][:2] == [
        "example.test",
        "xcap.example.test",
    ]


# Failures


async def test_a_domain_that_does_not_exist(serve, notifications):
    serve(HOSTS)
    lookup = DNSLookup()
    for call, what in [
        (lambda: lookup.lookup_sip_proxy(URI("missing.test"), ["udp"]), "SIP proxy"),
        (lambda: lookup.lookup_service(URI("missing.test"), "stun"), "stun server"),
        (lambda: lookup.lookup_xcap_server(URI("missing.test")), "XCAP server"),
    ]:
        with pytest.raises(DNSLookupError):
            await call()
        failure = named(notifications, "DNSLookupDidFail")[-1]
        assert failure.sender is lookup
        assert failure.data.error.startswith(f"no {what} found for missing.test: ")
        assert "does not exist" in failure.data.error


async def test_a_nameserver_that_does_not_answer(manager, notifications):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        manager.system_nameservers = [f"127.0.0.1:{silent.getsockname()[1]}"]
        task = DNSLookup().lookup_sip_proxy(URI("example.test"), ["udp"], timeout=0.2, lifetime=1)
        with pytest.raises(DNSLookupError, match="no nameserver answered"):
            await asyncio.wait_for(task, 10)
    [failure] = named(notifications, "DNSLookupDidFail")
    assert "lifetime 1 s" in failure.data.error


# Authoritative nameservers, cache


def ns_rdata(name: str) -> str:
    """The wire form of a domain name, in hex, for dnsmasq's --dns-rr."""
    return "".join(f"{len(label):02x}{label.encode().hex()}" for label in name.split(".")) + "00"


async def test_authoritative_nameservers_from_ns_records(serve, manager, notifications):
    port = free_port("127.0.0.1", "127.0.0.2")
    serve(
        [
            f"--dns-rr=auth.test,2,{ns_rdata('ns1.auth.test')}",
            "--host-record=ns1.auth.test,127.0.0.2",
        ],
        port=port,
    )
    authoritative = Dnsmasq(
        [
            "--srv-host=_sip._udp.auth.test,sip.auth.test,5090,0,0",
            "--host-record=sip.auth.test,127.0.0.80",
        ],
        address="127.0.0.2",
        port=port,
    )
    manager.authoritative_port = port
    with authoritative:
        routes = await DNSLookup().lookup_sip_proxy(URI("auth.test"), ["udp"])
    assert routes == [Route("127.0.0.80", 5090, "udp")]
    srv = [n.data for n in named(notifications, "DNSLookupTrace") if n.data.query_type == "SRV"]
    assert srv[0].nameservers == [f"127.0.0.2:{port}"]


@pytest.mark.parametrize(("local_ttl", "asked_again"), [(None, 5), (60, 3)])
async def test_the_cache_honours_the_ttl(serve, local_ttl, asked_again):
    server = serve(
        [
            "--srv-host=_sip._udp.ttl.test,sip.ttl.test,5060,0,0",
            "--host-record=sip.ttl.test,127.0.0.90",
        ],
        local_ttl=local_ttl,
    )
    lookup = DNSLookup()

    def queries():
        return sum("query[" in line for line in server.log.splitlines())

    await lookup.lookup_sip_proxy(URI("ttl.test"), ["udp"])
    first = queries()
    assert first == 6  # dnsmasq's readiness probe, then NS, NAPTR, SRV, A and AAAA
    await lookup.lookup_sip_proxy(URI("ttl.test"), ["udp"])
    # With a TTL the SRV and A answers come from the cache; the negative answers
    # (NS, NAPTR, AAAA) carry no SOA, so they are never cached.
    assert queries() - first == asked_again


# DNSManager


PROBE = [
    "--naptr-record=probe.test,10,10,s,SIP+D2U,,_sip._udp.probe.test",
    "--srv-host=_sip._udp.probe.test,sip.probe.test,5060,0,0",
]


async def wait_for_notification(notifications, name, count=1):
    for _ in range(300):
        found = named(notifications, name)
        if len(found) >= count:
            return found[count - 1]
        await asyncio.sleep(0.01)
    raise AssertionError(f"no {name}")


async def test_manager_probes_dnsmasq_and_falls_back(manager, notifications):
    port = free_port("127.0.0.1")
    local = Dnsmasq([], port=port)
    fallback = Dnsmasq(PROBE, address="127.0.0.3")
    with local, fallback:
        manager.system_nameservers = [local.nameserver]
        manager.fallback_nameservers = [fallback.nameserver]
        manager.probe_domain = "probe.test"
        manager.probe_timeout = manager.probe_lifetime = 0.5
        manager.probe_interval = 0.3
        manager.start()
        initialized = await wait_for_notification(notifications, "DNSResolverDidInitialize")
        assert initialized.data.nameservers == [fallback.nameserver]
        local.stop()
        local.records = PROBE
        local.start()
        changed = await wait_for_notification(notifications, "DNSNameserversDidChange")
        assert changed.data.nameservers == [local.nameserver] == manager.nameservers
