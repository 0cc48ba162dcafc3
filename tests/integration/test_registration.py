"""Registration and Publication against scripted servers in a RemoteSDK child.

The child answers REGISTER / PUBLISH from a script (tests.support.sip.serve), which
lets the tests pick what a registrar says: short expiries, 423, 401, 412, failures.
"""

from __future__ import annotations

import pytest
from tests.support.remote import RemoteSDK
from tests.support.sip import LOOPBACK, local_engine, route_to

from sipsimple.core import Credentials, Publication, Registration, RequestStateError
from sipsimple.core.sip.headers import ContactHeader, FromHeader
from sipsimple.core.sip.uri import SIPURI
from sipsimple.notification import NotificationQueue

ALICE = SIPURI(user="alice", host="example.test")


@pytest.fixture(scope="module")
def remote():
    with RemoteSDK() as sdk:
        sdk.ports = sdk.call("tests.support.sip:start_engine", udp_port=0, tcp_port=0)
        yield sdk


@pytest.fixture
async def engine():
    async with local_engine(udp_port=0, tcp_port=None, T1=0.05) as engine:
        yield engine


def contact(engine, user: str = "alice") -> ContactHeader:
    return ContactHeader(SIPURI(user=user, host=LOOPBACK, port=engine.udp_port))


async def serve(remote, method, script):
    await remote.async_call("tests.support.sip:serve", method, script)


async def served(remote, method):
    return await remote.async_call("tests.support.sip:served", method)


async def test_register_refresh_and_end(engine, remote):
    await serve(remote, "REGISTER", [(200, [("Contact", "{contact};expires=2")])])
    registration = Registration(FromHeader(ALICE), duration=2)
    assert registration.state == "unregistered" and not registration.is_registered
    with NotificationQueue(sender=registration) as queue:
        registration.register(contact(engine), route_to(remote.ports["udp"]))
        note = await queue.wait_for("SIPRegistrationDidSucceed", timeout=5)
        assert note.data.code == 200 and note.data.expires_in == 2
        assert note.data.contact_header.uri == contact(engine).uri
        assert [c.uri for c in note.data.contact_header_list] == [contact(engine).uri]
        assert note.data.route_header.uri.port == remote.ports["udp"]
        assert registration.is_registered and registration.state == "registered"
        assert registration.contact_uri == contact(engine).uri
        assert 0 < registration.expires_in <= 2
        # refreshed at max(2 - 40, 2 / 2) = 1 s
        await queue.wait_for("SIPRegistrationDidSucceed", timeout=3)
        registration.end()
        await queue.wait_for("SIPRegistrationWillEnd", timeout=1)
        ended = await queue.wait_for("SIPRegistrationDidEnd", timeout=5)
        assert ended.data.expired is False
    assert not registration.is_registered and registration.expires_in == 0
    first, refresh, removal = (entry["headers"] for entry in await served(remote, "REGISTER"))
    assert first["Call-ID"] == refresh["Call-ID"] == removal["Call-ID"]
    assert [h["CSeq"] for h in (first, refresh, removal)] == [
        "1 REGISTER",
        "2 REGISTER",
        "3 REGISTER",
    ]
    assert first["Expires"] == "2" and removal["Expires"] == "0"
    assert "expires=0" in removal["Contact"]
    assert first["To"] == "<sip:alice@example.test>"


async def test_423_is_retried_with_the_minimum_asked_for(engine, remote):
    await serve(
        remote,
        "REGISTER",
        [(423, [("Min-Expires", "600")]), (200, [("Contact", "{contact};expires=600")])],
    )
    registration = Registration(FromHeader(ALICE), duration=60)
    with NotificationQueue(sender=registration) as queue:
        registration.register(contact(engine), route_to(remote.ports["udp"]))
        note = await queue.wait_for("SIPRegistrationDidSucceed", timeout=5)
        assert note.data.expires_in == 600
    first, second = (entry["headers"] for entry in await served(remote, "REGISTER"))
    assert (first["Expires"], second["Expires"]) == ("60", "600")


async def test_a_second_423_is_reported_with_min_expires(engine, remote):
    await serve(remote, "REGISTER", [(423, [("Min-Expires", "600")])])
    registration = Registration(FromHeader(ALICE), duration=60)
    with NotificationQueue(sender=registration) as queue:
        registration.register(contact(engine), route_to(remote.ports["udp"]))
        note = await queue.wait_for("SIPRegistrationDidFail", timeout=5)
    assert (note.data.code, note.data.min_expires) == (423, 600)
    assert len(await served(remote, "REGISTER")) == 2
    assert registration.state == "unregistered"


async def test_credentials_answer_the_challenge_and_wrong_ones_fail(engine, remote):
    challenge = 'Digest realm="example.test", nonce="n1", qop="auth", algorithm=MD5'
    await serve(
        remote,
        "REGISTER",
        [(401, [("WWW-Authenticate", challenge)]), (200, [("Contact", "{contact};expires=60")])],
    )
    registration = Registration(FromHeader(ALICE), credentials=Credentials("alice", "pw"))
    with NotificationQueue(sender=registration) as queue:
        registration.register(contact(engine), route_to(remote.ports["udp"]))
        assert (await queue.wait_for("SIPRegistrationDidSucceed", timeout=5)).data.code == 200
    assert "Authorization" in (await served(remote, "REGISTER"))[1]["headers"]

    await serve(remote, "REGISTER", [(401, [("WWW-Authenticate", challenge)])])
    rejected = Registration(FromHeader(ALICE), credentials=Credentials("alice", "wrong"))
    with NotificationQueue(sender=rejected) as queue:
        rejected.register(contact(engine), route_to(remote.ports["udp"]))
        note = await queue.wait_for("SIPRegistrationDidFail", timeout=5)
    assert note.data.code == 401 and note.data.min_expires is None
    assert len(await served(remote, "REGISTER")) == 2  # answered once, then given up


async def test_a_failed_refresh_warns_then_expires(engine, remote):
    await serve(remote, "REGISTER", [(200, [("Contact", "{contact};expires=3")]), (500, [])])
    registration = Registration(FromHeader(ALICE), duration=3)
    registration.expire_warning_time = 1
    with NotificationQueue(sender=registration) as queue:
        registration.register(contact(engine), route_to(remote.ports["udp"]))
        await queue.wait_for("SIPRegistrationDidSucceed", timeout=5)
        failed = await queue.wait_for("SIPRegistrationDidFail", timeout=4)  # refresh at 1.5 s
        assert failed.data.code == 500
        assert registration.is_registered  # still valid until it lapses
        warned = await queue.wait_for("SIPRegistrationWillExpire", timeout=3)
        assert 0 <= warned.data.expires <= 1
        ended = await queue.wait_for("SIPRegistrationDidEnd", timeout=3)
    assert ended.data.expired is True
    assert not registration.is_registered


async def test_a_new_contact_replaces_the_old_one(engine, remote):
    await serve(remote, "REGISTER", [(200, [("Contact", "{contact};expires=60")])])
    registration = Registration(FromHeader(ALICE), duration=60)
    with NotificationQueue(sender=registration) as queue:
        registration.register(contact(engine, "one"), route_to(remote.ports["udp"]))
        await queue.wait_for("SIPRegistrationDidSucceed", timeout=5)
        registration.register(contact(engine, "two"), route_to(remote.ports["udp"]))
        note = await queue.wait_for("SIPRegistrationDidSucceed", timeout=5)
        assert registration.contact_uri.user == "two"
        assert note.data.contact_header.uri.user == "two"
    second = (await served(remote, "REGISTER"))[1]["headers"]["Contact"]
    assert "sip:two@" in second and "sip:one@" in second and "expires=0" in second


async def test_end_while_registering_waits_for_the_answer(engine, remote):
    await serve(remote, "REGISTER", [(200, [("Contact", "{contact};expires=60")])])
    registration = Registration(FromHeader(ALICE))
    with NotificationQueue(sender=registration) as queue:
        registration.register(contact(engine), route_to(remote.ports["udp"]))
        registration.end()
        await queue.wait_for("SIPRegistrationWillEnd", timeout=1)
        await queue.wait_for("SIPRegistrationDidSucceed", timeout=5)
        assert (await queue.wait_for("SIPRegistrationDidEnd", timeout=5)).data.expired is False
    assert [e["headers"]["Expires"] for e in await served(remote, "REGISTER")] == ["300", "0"]


async def test_a_registrar_that_does_not_answer_fails_with_408(engine):
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind((LOOPBACK, 0))
        registration = Registration(FromHeader(ALICE))
        with NotificationQueue(sender=registration) as queue:
            registration.register(contact(engine), route_to(silent.getsockname()[1]), timeout=0.5)
            note = await queue.wait_for("SIPRegistrationDidFail", timeout=3)
    assert note.data.code == 408


def test_registration_arguments_are_checked():
    with pytest.raises(ValueError):
        Registration(FromHeader(ALICE), duration=0)
    with pytest.raises(TypeError):
        Registration("sip:alice@example.test")
    registration = Registration(FromHeader(ALICE))
    with pytest.raises(ValueError):
        registration.register(ContactHeader(None), None)


# -- Publication -----------------------------------------------------------------------

PIDF = '<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b"/>'


async def test_publish_refresh_modify_recover_and_end(engine, remote):
    await serve(
        remote,
        "PUBLISH",
        [
            (200, [("SIP-ETag", "e1"), ("Expires", "2")]),  # initial
            (200, [("SIP-ETag", "e2"), ("Expires", "60")]),  # refresh at 1 s
            (412, []),  # the modification: the server lost e2
            (200, [("SIP-ETag", "e3"), ("Expires", "60")]),  # fresh publication
            (200, [("Expires", "0")]),  # end
        ],
    )
    publication = Publication(FromHeader(ALICE), "presence", "application/pidf+xml", duration=2)
    with pytest.raises(RequestStateError):
        publication.publish(None, route_to(remote.ports["udp"]))
    with NotificationQueue(sender=publication) as queue:
        publication.publish(PIDF, route_to(remote.ports["udp"]))
        note = await queue.wait_for("SIPPublicationDidSucceed", timeout=5)
        assert note.data.expires == 2 and publication.etag == "e1"
        await queue.wait_for("SIPPublicationDidSucceed", timeout=3)
        assert publication.etag == "e2" and publication.state == "published"
        publication.publish(PIDF.replace("a@b", "c@d"), route_to(remote.ports["udp"]))
        await queue.wait_for("SIPPublicationDidSucceed", timeout=5)
        assert publication.etag == "e3"
        publication.end()
        await queue.wait_for("SIPPublicationWillEnd", timeout=1)
        assert (await queue.wait_for("SIPPublicationDidEnd", timeout=5)).data.expired is False
    assert publication.etag is None
    initial, refresh, modify, fresh, end = await served(remote, "PUBLISH")
    assert initial["body"] == PIDF.encode() and "SIP-If-Match" not in initial["headers"]
    assert initial["headers"]["Event"] == "presence"
    assert initial["headers"]["Content-Type"] == "application/pidf+xml"
    assert refresh["body"] == b"" and refresh["headers"]["SIP-If-Match"] == "e1"
    assert modify["headers"]["SIP-If-Match"] == "e2" and b"c@d" in modify["body"]
    assert "SIP-If-Match" not in fresh["headers"] and b"c@d" in fresh["body"]
    assert end["headers"]["Expires"] == "0" and end["headers"]["SIP-If-Match"] == "e3"
    assert end["body"] == b""


async def test_a_publication_that_cannot_end_says_so(engine, remote):
    await serve(remote, "PUBLISH", [(200, [("SIP-ETag", "x"), ("Expires", "60")]), (403, [])])
    publication = Publication(FromHeader(ALICE), "presence", "application/pidf+xml")
    with NotificationQueue(sender=publication) as queue:
        publication.publish(PIDF, route_to(remote.ports["udp"]))
        await queue.wait_for("SIPPublicationDidSucceed", timeout=5)
        publication.end()
        note = await queue.wait_for("SIPPublicationDidNotEnd", timeout=5)
    assert note.data.code == 403
    assert publication.state == "published"
