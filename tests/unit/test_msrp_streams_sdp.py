"""The SDP side of the MSRP streams: which offers they take, what they put in their
m-line, who opens the connection (a=setup), file-range, relay AUTH digests, and the
checks ChatStream makes before sending. Nothing here opens a socket."""

from __future__ import annotations

from typing import Any

import pytest
from tests.support.msrp_streams import account, msrp_settings, sdp, session  # noqa: F401

from sipsimple.core import SDPAttribute, SDPMediaStream
from sipsimple.core.sip.auth import digest_response
from sipsimple.msrp import MSRPURI, FileSelector
from sipsimple.msrp.protocol import parse_auth_params
from sipsimple.payloads.cpim import CPIMIdentity, CPIMPayload
from sipsimple.streams import MediaStreamRegistry
from sipsimple.streams.msrp import (
    ChatStream,
    ChatStreamError,
    DesktopSharingStream,
    FileTransferStream,
    MSRPStreamBase,
    MSRPStreamError,
)
from sipsimple.streams.msrp.filetransfer import _parse_file_range

PATH = "msrp://127.0.0.1:4000/abcd;tcp"
SELECTOR = 'name:"a b.txt" type:text/plain size:10 hash:sha-1:' + ":".join(["AB"] * 20)


def media(
    *attributes: tuple[str, str],
    transport: str = "TCP/MSRP",
    kind: str = "message",
    port: int = 4000,
) -> SDPMediaStream:
    return SDPMediaStream(
        kind,
        port,
        transport,
        formats=["*"],
        attributes=[SDPAttribute(name, value) for name, value in attributes],
    )


CHAT_OFFER = media(("path", PATH), ("accept-types", "message/cpim text/plain"))


def test_the_streams_are_registered_file_transfer_first() -> None:
    registered = [cls for cls in MediaStreamRegistry() if issubclass(cls, MSRPStreamBase)]
    assert registered == [FileTransferStream, ChatStream, DesktopSharingStream]
    assert ChatStream.type == "chat" and FileTransferStream.type == "file-transfer"
    with pytest.raises(TypeError):
        MSRPStreamBase(account("alice"))  # abstract: new_from_sdp is missing


@pytest.mark.parametrize(
    ("offer", "taken"),
    [
        (CHAT_OFFER, True),
        (media(("path", PATH), ("accept-types", "text/*")), True),
        (media(("path", PATH), ("accept-types", "*")), True),
        (media(("path", PATH), ("accept-types", "image/png")), False),
        (media(("path", PATH), ("accept-types", "text/plain"), transport="TCP/TLS/MSRP"), False),
        (media(("accept-types", "text/plain")), False),  # no a=path
        (media(("path", PATH), ("accept-types", "text/plain"), port=0), False),
        (media(("path", PATH), ("accept-types", "text/plain"), kind="audio"), False),
        (media(("path", PATH), ("accept-types", "*"), ("file-selector", SELECTOR)), False),
    ],
)
def test_which_offers_a_chat_stream_takes(offer: SDPMediaStream, taken: bool) -> None:
    stream = ChatStream.new_from_sdp(account("bob"), sdp(offer), 0)
    assert (stream is not None) == taken
    if stream is not None:
        assert stream.remote_media is not None and stream.state is None


def test_which_offers_a_file_transfer_stream_takes() -> None:
    push = media(
        ("path", PATH),
        ("accept-types", "*"),
        ("file-selector", SELECTOR),
        ("file-transfer-id", "xyz123"),
        ("sendonly", ""),
    )
    stream = FileTransferStream.new_from_sdp(account("bob"), sdp(push), 0)
    assert stream is not None
    assert stream.direction == "recvonly" and not stream.outgoing
    assert stream.file_selector == FileSelector.parse(SELECTOR)
    assert stream.transfer_id == "xyz123"
    pull = media(("path", PATH), ("file-selector", SELECTOR), ("recvonly", ""))
    assert FileTransferStream.new_from_sdp(account("bob"), sdp(pull), 0) is None
    broken = media(("path", PATH), ("file-selector", 'name:"x'), ("sendonly", ""))
    assert FileTransferStream.new_from_sdp(account("bob"), sdp(broken), 0) is None
    assert FileTransferStream.new_from_sdp(account("bob"), sdp(CHAT_OFFER), 0) is None


def test_constructor_checks() -> None:
    with pytest.raises(TypeError):
        ChatStream(None)
    with pytest.raises(TypeError):
        FileTransferStream(account("alice"), "file.txt")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="path or an fd"):
        FileTransferStream(account("alice"), FileSelector("x", "text/plain", 1, None))


def initialized_as(stream: MSRPStreamBase, role: str, path: str = PATH) -> MSRPStreamBase:
    stream.local_uri = MSRPURI.parse(path)
    stream.local_path = [stream.local_uri]
    stream.local_role = role
    return stream


def attributes_of(line: SDPMediaStream) -> dict[str, str]:
    return {attribute.name: attribute.value for attribute in line.attributes}


def test_the_chat_m_line() -> None:
    line = initialized_as(ChatStream(account("alice")), "actpass").get_local_media(True)
    assert (line.media, line.port, line.transport, line.formats) == (
        "message",
        4000,
        "TCP/MSRP",
        ["*"],
    )
    assert attributes_of(line) == {
        "path": PATH,
        "accept-types": "message/cpim text/* image/* application/im-iscomposing+xml",
        "accept-wrapped-types": "*",
        "setup": "actpass",
        "max-size": str(16 * 1024 * 1024),
    }
    assert line.connection is not None and line.connection.address == "127.0.0.1"
    tls = initialized_as(
        ChatStream(account("alice", "tls")), "active", PATH.replace("msrp:", "msrps:")
    )
    assert tls.get_local_media(True).transport == "TCP/TLS/MSRP"


def test_the_file_transfer_m_lines() -> None:
    selector = FileSelector.parse(SELECTOR)
    selector.path = "/tmp/a b.txt"
    sender = initialized_as(FileTransferStream(account("alice"), selector), "actpass")
    attributes = attributes_of(sender.get_local_media(True))
    assert attributes["sendonly"] == "" and attributes["file-selector"] == selector.sdp_repr
    assert attributes["file-transfer-id"] == sender.transfer_id
    assert "file-range" not in attributes and "max-size" not in attributes
    receiver = FileTransferStream(account("bob"))
    receiver.file_selector = FileSelector.parse(SELECTOR)
    initialized_as(receiver, "passive").offset = 4
    attributes = attributes_of(receiver.get_local_media(False))
    assert attributes["recvonly"] == "" and attributes["file-range"] == "5-10"


@pytest.mark.parametrize(
    ("value", "offset"),
    [("1-10", 0), ("5-10", 4), ("11-10", 10), ("3-*", 2)],
)
def test_file_range(value: str, offset: int) -> None:
    assert _parse_file_range(value, 10) == offset


@pytest.mark.parametrize("value", ["0-10", "12-10", "5-9", "5", "a-b", "-10", "5-11"])
def test_bad_file_ranges(value: str) -> None:
    with pytest.raises(MSRPStreamError):
        _parse_file_range(value, 10)


def test_a_renegotiation_may_repeat_the_stream_but_not_move_it() -> None:
    stream = ChatStream(account("alice"))
    stream.remote_path = [MSRPURI.parse(PATH)]
    assert stream.validate_update(sdp(CHAT_OFFER), 0)
    moved = media(("path", PATH.replace("abcd", "efgh")), ("accept-types", "text/plain"))
    assert not stream.validate_update(sdp(moved), 0)
    assert not stream.validate_update(sdp(media(("path", "nonsense"))), 0)


# -- who connects (needs the settings) ---------------------------------------------------------


def offered(setup: str | None) -> ChatStream:
    attributes = [("path", PATH), ("accept-types", "text/plain")]
    if setup is not None:
        attributes.append(("setup", setup))
    stream = ChatStream.new_from_sdp(account("bob"), sdp(media(*attributes)), 0)
    assert stream is not None
    return stream


@pytest.mark.usefixtures("msrp_settings")
def test_connection_plans() -> None:
    plan = ChatStream._connection_plan
    assert plan(ChatStream(account("alice")), True) == ("actpass", "listen")
    assert plan(ChatStream(account("alice", model="relay")), True) == ("active", "connect")
    outbound = account("alice", model="relay")
    outbound.nat_traversal.use_msrp_relay_for_outbound = True
    assert plan(ChatStream(outbound), True) == ("actpass", "relay")
    # Listening over TLS needs a certificate (none is configured here).
    assert plan(ChatStream(account("alice", "tls")), True) == ("active", "connect")
    assert plan(offered("actpass"), False) == ("active", "connect")
    assert plan(offered("passive"), False) == ("active", "connect")
    assert plan(offered("active"), False) == ("passive", "listen")
    assert plan(offered(None), False) == ("passive", "listen")
    relayed = offered("active")
    relayed.account = account("bob", model="relay")
    assert plan(relayed, False) == ("passive", "relay")
    with pytest.raises(MSRPStreamError, match="unusable offer"):
        plan(offered("holdconn"), False)
    tls = ChatStream.new_from_sdp(
        account("bob", "tls"),
        sdp(
            media(
                ("path", PATH.replace("msrp:", "msrps:")),
                ("accept-types", "text/plain"),
                ("setup", "active"),
                transport="TCP/TLS/MSRP",
            )
        ),
        0,
    )
    assert tls is not None
    with pytest.raises(MSRPStreamError, match="certificate"):
        plan(tls, False)


def test_who_connects_once_the_answer_is_in() -> None:
    stream = ChatStream(account("alice"))
    stream.local_role = "actpass"
    for answer, connects in (("active", False), ("passive", True), (None, True)):
        stream.remote_role = answer
        assert stream._connects() is connects
    stream.remote_role = "actpass"
    with pytest.raises(MSRPStreamError, match="unusable answer"):
        stream._connects()
    stream.local_role = "passive"
    assert stream._connects() is False


def test_relay_authorization_answers_the_challenge() -> None:
    stream = ChatStream(account("alice"))
    uri = "msrps://relay.example.test:2855;tcp"
    challenge = {"realm": "example.test", "nonce": "n1", "qop": "auth,auth-int", "opaque": "o"}
    scheme, first = parse_auth_params(stream._authorize(challenge, "AUTH", uri))
    assert scheme == "Digest"
    assert first["username"] == "alice" and first["uri"] == uri and first["opaque"] == "o"
    assert first["qop"] == "auth" and first["nc"] == "00000001"
    expected = digest_response(
        algorithm="MD5",
        username="alice",
        realm="example.test",
        password="secret",
        method="AUTH",
        uri=uri,
        nonce="n1",
        qop="auth",
        nonce_count=1,
        cnonce=first["cnonce"],
    )
    assert first["response"] == expected
    _, second = parse_auth_params(stream._authorize(challenge, "AUTH", uri))
    assert second["nc"] == "00000002"
    _, plain = parse_auth_params(stream._authorize({"realm": "r", "nonce": "n2"}, "AUTH", uri))
    assert "qop" not in plain and "cnonce" not in plain


# -- what a chat stream sends ------------------------------------------------------------------


def started_chat(remote: SDPMediaStream, cpim: bool) -> ChatStream:
    stream = ChatStream(account("alice"))
    stream.session = session("alice", "bob")
    stream._read_accept_types(remote)
    stream.cpim_enabled = cpim
    return stream


def encode(stream: ChatStream, content: Any, content_type: str = "text/plain", **options: Any):
    from sipsimple.streams.msrp.chat import _Outgoing

    item = _Outgoing("id1", content, content_type, **options)
    return stream._encode(item)


def test_messages_are_wrapped_in_cpim() -> None:
    stream = started_chat(CHAT_OFFER, cpim=True)
    data, content_type = encode(stream, "héllo", subject="hi", required=["foo"])
    assert content_type == "message/cpim"
    payload = CPIMPayload.decode(data)
    assert payload.text == "héllo" and payload.content_type == "text/plain"
    assert payload.charset == "utf-8" and payload.subject == "hi" and payload.required == ["foo"]
    assert payload.sender == CPIMIdentity("sip:alice@example.test", "Alice")
    assert payload.recipients == [CPIMIdentity("sip:bob@example.test", "Bob")]
    assert payload.timestamp is not None


def test_what_the_peer_cannot_take_is_refused() -> None:
    plain = started_chat(media(("path", PATH), ("accept-types", "text/plain")), cpim=False)
    assert encode(plain, "hi") == (b"hi", "text/plain; charset=utf-8")
    assert encode(plain, b"\x00\x01", "text/plain") == (b"\x00\x01", "text/plain")
    with pytest.raises(ChatStreamError, match="text/html"):
        encode(plain, "x", "text/html")
    with pytest.raises(ChatStreamError, match="subject need"):
        encode(plain, "x", subject="s")
    wrapped = media(
        ("path", PATH),
        ("accept-types", "message/cpim"),
        ("accept-wrapped-types", "text/plain"),
        ("max-size", "500"),
    )
    cpim = started_chat(wrapped, cpim=True)
    with pytest.raises(ChatStreamError, match="image/png"):
        encode(cpim, b"png", "image/png")
    with pytest.raises(ChatStreamError, match="the peer takes 500"):
        encode(cpim, "x" * 600)
    with pytest.raises(ChatStreamError, match="private"):
        encode(cpim, "x", recipients=[CPIMIdentity("sip:carol@example.test")])
    same = encode(cpim, "x", recipients=[CPIMIdentity("sip:bob@example.test")])
    assert same[1] == "message/cpim"
    private = started_chat(
        media(("path", PATH), ("accept-types", "message/cpim text/plain")), cpim=True
    )
    private.private_messages_allowed = True
    data, _ = encode(private, "x", recipients=[CPIMIdentity("sip:carol@example.test")])
    assert CPIMPayload.decode(data).recipients == [CPIMIdentity("sip:carol@example.test")]


def test_send_message_checks_its_arguments() -> None:
    stream = ChatStream(account("alice"))
    with pytest.raises(TypeError):
        stream.send_message(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        stream.send_message("x", "plain")
    with pytest.raises(ValueError, match="timezone"):
        from datetime import datetime

        stream.send_message("x", timestamp=datetime(2020, 1, 1))
    with pytest.raises(TypeError):
        stream.send_message("x", recipients="sip:bob@example.test")
    with pytest.raises(ChatStreamError, match="is-composing"):
        stream.send_composing_indication("active", 10)
    with pytest.raises(ValueError):
        stream.send_composing_indication("typing", 10)
