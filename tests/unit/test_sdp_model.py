"""SDP model: parsing real-world and documented descriptions, strict writing, frozen variants."""

import copy
import pickle
from pathlib import Path

import pytest

from sipsimple.core import SDPParseError
from sipsimple.core.sdp import (
    STATIC_PAYLOAD_TYPES,
    FrozenSDPAttribute,
    FrozenSDPAttributeList,
    FrozenSDPBandwidthInfo,
    FrozenSDPConnection,
    FrozenSDPMediaStream,
    FrozenSDPSession,
    MediaCodec,
    SDPAttribute,
    SDPAttributeList,
    SDPBandwidthInfo,
    SDPConnection,
    SDPMediaStream,
    SDPSession,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "sdp"
SESSION_FILES = sorted(p for p in DATA.glob("*.sdp") if not p.name.endswith("_media.sdp"))


def read(name: str) -> str:
    return (DATA / name).read_text()


# --- the examples from the middleware documentation ---------------------------------------------


def test_every_data_file_parses_and_round_trips():
    assert len(SESSION_FILES) >= 11
    for path in SESSION_FILES:
        session = SDPSession.parse(path.read_text())
        assert SDPSession.parse(str(session)) == session, path.name
        assert FrozenSDPSession.parse(path.read_bytes()) == session, path.name


def test_documented_audio_stream_sdp():
    session = FrozenSDPSession.parse(read("spec_audio_stream.sdp"))
    assert (session.user, session.id, session.version) == ("-", 3467525278, 3467525278)
    assert (session.net_type, session.address_type, session.address) == ("IN", "IP4", "192.168.1.6")
    assert session.name == "blink-0.10.7-beta"
    assert session.connection == SDPConnection("80.101.96.20")
    assert (session.start_time, session.stop_time) == (0, 0)
    [audio] = session.media
    assert (audio.media, audio.port, audio.transport) == ("audio", 55328, "RTP/AVP")
    assert audio.formats == ("104", "103", "102", "3", "9", "0", "8", "101")
    assert audio.codec_list[0] == MediaCodec("speex", 32000)
    assert audio.rtpmap("0") == MediaCodec("PCMU", 8000)
    assert audio.rtpmap("101") == MediaCodec("telephone-event", 8000)
    assert audio.fmtp("101") == "0-15"
    assert audio.fmtp("0") is None
    assert audio.attributes.getfirst("rtcp") == "55329 IN IP4 80.101.96.20"
    assert len(audio.attributes.getall("candidate")) == 8
    assert audio.attributes.getall("candidate")[0].startswith("S 1 UDP 31 80.101.96.20")
    assert audio.direction == "sendrecv"
    assert audio.has_srtp and audio.has_ice_attributes and audio.has_ice_candidates
    assert "crypto" in audio.attributes and "fingerprint" not in audio.attributes


def test_documented_chat_stream_sdp_with_a_wrapped_attribute():
    session = SDPSession.parse(read("spec_chat_stream.sdp"))
    [chat] = session.media
    assert (chat.media, chat.port, chat.transport, chat.formats) == (
        "message",
        2855,
        "TCP/TLS/MSRP",
        [],
    )
    assert chat.attributes.getfirst("path") == "msrps://192.168.1.6:2855/ca7940f12ddef14c3c32;tcp"
    # The documentation wraps this value onto a second line; it is read as one value.
    assert chat.attributes.getfirst("accept-types") == (
        "message/cpim text/ application/im-iscomposing+xml"
    )
    assert chat.attributes.getfirst("accept-wrapped-types") == "*"
    assert chat.codec_list == [] and not chat.is_rtp


def test_documented_file_transfer_sdp_with_a_blank_line():
    session = SDPSession.parse(read("spec_file_transfer_stream.sdp"))
    [transfer] = session.media
    assert transfer.direction == "sendonly"
    assert transfer.attributes.getfirst("accept-types") == ""
    assert [a.name for a in transfer.attributes] == [
        "path",
        "sendonly",
        "accept-types",
        "accept-wrapped-types",
        "file-selector",
    ]
    assert transfer.attributes.getfirst("file-selector").startswith('name:"reblink.pdf" type:')


def test_documented_desktop_sharing_media_section():
    media = SDPMediaStream.parse(read("spec_desktop_sharing_media.sdp"))
    assert (media.media, media.port, media.transport, media.formats) == (
        "application",
        2855,
        "TCP/TLS/MSRP",
        ["*"],
    )
    assert media.attributes.getfirst("rfbsetup") == "active"
    assert str(media).startswith("m=application 2855 TCP/TLS/MSRP *\r\na=path:msrps://")
    assert FrozenSDPMediaStream.parse(str(media)) == media


# --- leniency ----------------------------------------------------------------------------------

TYPICAL = (
    "v=0\r\n"
    "o=alice 2890844526 2890844527 IN IP4 198.51.100.1\r\n"
    "s=call\r\n"
    "c=IN IP4 198.51.100.1\r\n"
    "t=0 0\r\n"
    "m=audio 49170 RTP/AVP 0 8 101\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-16\r\n"
    "a=sendrecv\r\n"
)


def test_lf_only_and_cr_only_line_ends_and_outer_blanks():
    expected = SDPSession.parse(TYPICAL)
    assert SDPSession.parse(TYPICAL.replace("\r\n", "\n")) == expected
    assert SDPSession.parse(TYPICAL.replace("\r\n", "\r")) == expected
    padded = "\n\n" + "".join(f"  {line}  \t\n" for line in TYPICAL.splitlines()) + "\n\n"
    assert SDPSession.parse(padded) == expected


def test_missing_t_and_s_lines_take_defaults():
    text = "v=0\no=- 1 1 IN IP4 192.0.2.1\nc=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0\n"
    session = SDPSession.parse(text)
    assert (session.name, session.start_time, session.stop_time) == ("", 0, 0)
    written = str(session)
    assert "\r\ns= \r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio" in written
    assert SDPSession.parse(written) == session


def test_lines_in_the_wrong_order_land_where_they_belong():
    text = (
        "o=- 7 8 IN IP4 192.0.2.9\n"
        "v=0\n"
        "c=IN IP4 192.0.2.9\n"
        "a=tool:x\n"
        "s=out of order\n"
        "b=AS:64\n"
        "m=audio 5004 RTP/AVP 0\n"
        "a=ptime:20\n"
        "c=IN IP4 192.0.2.10\n"
        "b=TIAS:64000\n"
        "t=0 0\n"
    )
    session = SDPSession.parse(text)
    assert session.name == "out of order"
    assert session.attributes.getfirst("tool") == "x"
    assert [(b.modifier, b.value) for b in session.bandwidth_info] == [("AS", 64)]
    [audio] = session.media
    assert audio.connection.address == "192.0.2.10"
    assert [(b.modifier, b.value) for b in audio.bandwidth_info] == [("TIAS", 64000)]
    assert audio.attributes.getfirst("ptime") == "20"
    assert str(session) == (
        "v=0\r\no=- 7 8 IN IP4 192.0.2.9\r\ns=out of order\r\nc=IN IP4 192.0.2.9\r\n"
        "b=AS:64\r\nt=0 0\r\na=tool:x\r\nm=audio 5004 RTP/AVP 0\r\n"
        "c=IN IP4 192.0.2.10\r\nb=TIAS:64000\r\na=ptime:20\r\n"
    )


def test_unknown_and_unmodelled_lines_are_kept_in_rfc_order():
    text = (
        "v=0\n"
        "o=- 1 1 IN IP4 192.0.2.1\n"
        "s=-\n"
        "t=3034423619 3042462419\n"
        "r=7d 1h 0 25h\n"
        "z=2882844526 -1h\n"
        "u=http://www.example.com/seminars/sdp.pdf\n"
        "e=j.doe@example.com (Jane Doe)\n"
        "x=private extension\n"
        "t=3034423620 3042462420\n"
        "m=audio 4000 RTP/AVP 0\n"
        "k=prompt\n"
        "y=media extension\n"
        "i=first\n"
        "i=second\n"
    )
    session = SDPSession.parse(text)
    assert (session.start_time, session.stop_time) == (3034423619, 3042462419)
    assert session.extra_lines == [
        ("u", "http://www.example.com/seminars/sdp.pdf"),
        ("e", "j.doe@example.com (Jane Doe)"),
        ("r", "7d 1h 0 25h"),
        ("z", "2882844526 -1h"),
        ("x", "private extension"),
        ("t", "3034423620 3042462420"),
    ]
    [audio] = session.media
    assert audio.info == "first"
    assert audio.extra_lines == [("k", "prompt"), ("y", "media extension"), ("i", "second")]
    written = str(session)
    assert written.index("u=http") < written.index("e=j.doe") < written.index("t=3034423619")
    assert written.index("t=3034423619") < written.index("r=7d") < written.index("m=audio")
    assert SDPSession.parse(written) == session


def test_ipv6_connection_and_bandwidth_modifiers():
    text = (
        "v=0\no=- 5 5 IN IP6 2001:db8::1\ns=-\nc=IN IP6 2001:db8::1\nb=CT:384\nt=0 0\n"
        "m=audio 5004 RTP/AVP 0\nb=AS:80\nb=TIAS:64000\n"
        "m=video 5006 RTP/AVP 96\nc=IN IP6 2001:db8::2\na=rtpmap:96 H264/90000\n"
    )
    session = FrozenSDPSession.parse(text)
    assert session.connection == FrozenSDPConnection("2001:db8::1", "IN", "IP6")
    assert session.address_type == "IP6" and session.address == "2001:db8::1"
    assert session.bandwidth_info == [SDPBandwidthInfo("CT", 384)]
    assert "CT" in session.bandwidth_info and "AS" not in session.bandwidth_info
    assert [str(b) for b in session.media[0].bandwidth_info] == ["b=AS:80", "b=TIAS:64000"]
    assert session.media[1].connection.address == "2001:db8::2"
    assert session.media[1].rtpmap("96") == MediaCodec("h264", 90000)


def test_port_count_multicast_address_and_a_user_name_with_blanks():
    text = (
        "v=0\no=Jane Doe 1 2 IN IP4 192.0.2.1\ns=-\nc=IN IP4 233.252.0.1/127/3\nt=0 0\n"
        "m=video 51372/2 RTP/AVP 99\na=rtpmap:99 h263-1998/90000\n"
    )
    session = SDPSession.parse(text)
    assert session.user == "Jane Doe"
    assert session.connection.address == "233.252.0.1/127/3"
    assert (session.media[0].port, session.media[0].port_count) == (51372, 2)
    assert "m=video 51372/2 RTP/AVP 99\r\n" in str(session)
    assert "o=Jane Doe 1 2 IN IP4 192.0.2.1\r\n" in str(session)


def test_latin1_bytes_are_accepted():
    body = TYPICAL.replace("s=call", "s=Caf\xe9").encode("latin-1")
    assert SDPSession.parse(body).name == "Caf\xe9"
    assert SDPSession.parse(TYPICAL.replace("s=call", "s=Caf\xe9").encode()).name == "Caf\xe9"


def test_attribute_forms():
    assert SDPAttribute.parse("a=sendrecv") == SDPAttribute("sendrecv", "")
    assert SDPAttribute.parse("a=rtpmap:0 PCMU/8000\r\n") == SDPAttribute("rtpmap", "0 PCMU/8000")
    assert SDPAttribute.parse("a= fmtp : 101 0-15") == SDPAttribute("fmtp", "101 0-15")
    assert SDPAttribute.parse("a=path:msrp://h:1/x;tcp").value == "msrp://h:1/x;tcp"
    assert str(SDPAttribute("candidate", "1 1 UDP 1 ::1 5 typ host")).startswith("a=candidate:1")
    assert str(FrozenSDPAttribute("inactive")) == "a=inactive"
    assert SDPBandwidthInfo.parse("b=AS:64") == SDPBandwidthInfo("AS", 64)
    assert str(FrozenSDPBandwidthInfo("TIAS", 64000)) == "b=TIAS:64000"
    assert SDPConnection.parse("c=IN IP6 ::1") == SDPConnection("::1", "IN", "IP6")
    assert SDPConnection("0.0.0.0").is_null and not SDPConnection("192.0.2.1").is_null


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "missing v= line"),
        ("hello world\n", "line 1: expected <type>=<value>"),
        ("v=0\ns=-\nt=0 0\n", "missing o= line"),
        ("v=1\no=- 1 1 IN IP4 h\n", "unsupported SDP version"),
        ("v=0\no=- 1 1 IN IP4\n", "line 2: o= needs"),
        ("v=0\no=- one 1 IN IP4 h\n", "line 2: o= session id must be a decimal number"),
        ("v=0\no=- 1 1 IN IP4 h\nc=IN IP4\n", "line 3: c= must be"),
        ("v=0\no=- 1 1 IN IP4 h\nt=0\n", "line 3: t= must be"),
        ("v=0\no=- 1 1 IN IP4 h\nb=AS64\n", "line 3: b= must be"),
        ("v=0\no=- 1 1 IN IP4 h\nb=AS:lots\n", "line 3: bandwidth must be a decimal number"),
        ("v=0\no=- 1 1 IN IP4 h\nm=audio RTP/AVP\n", "line 3: m= needs"),
        ("v=0\no=- 1 1 IN IP4 h\nm=audio x RTP/AVP 0\n", "line 3: m= port must be"),
        ("v=0\no=- 1 1 IN IP4 h\nm=audio 70000 RTP/AVP 0\n", "above 65535"),
        ("v=0\no=- 1 1 IN IP4 h\ns=x\nstray words\n", "line 4: expected <type>=<value>"),
        ("v=0\no=- 1 " + "9" * 50 + " IN IP4 h\n", "session version must be a decimal number"),
    ],
)
def test_malformed_descriptions_raise_a_clear_sdp_parse_error(text, message):
    with pytest.raises(SDPParseError, match=message):
        SDPSession.parse(text)


def test_single_line_parsers_reject_other_lines():
    with pytest.raises(SDPParseError, match="expected a single a= line"):
        SDPAttribute.parse("b=AS:1")
    with pytest.raises(SDPParseError, match="must start with an m= line"):
        SDPMediaStream.parse("a=sendrecv\nm=audio 1 RTP/AVP 0\n")
    with pytest.raises(SDPParseError, match="a second m= line"):
        SDPMediaStream.parse("m=audio 1 RTP/AVP 0\nm=video 2 RTP/AVP 31\n")
    with pytest.raises(TypeError):
        SDPSession.parse(12)  # type: ignore[arg-type]


# --- writing -----------------------------------------------------------------------------------


def test_writer_uses_crlf_rfc_order_and_a_final_crlf():
    session = SDPSession(
        "192.0.2.5",
        id=11,
        version=12,
        name="sipsimple",
        info="a call",
        connection=SDPConnection("192.0.2.5"),
        attributes=[SDPAttribute("group", "BUNDLE 0")],
        bandwidth_info=[SDPBandwidthInfo("CT", 100)],
        media=[
            SDPMediaStream(
                "audio",
                5004,
                "RTP/AVP",
                formats=["0", "101"],
                info="voice",
                connection=SDPConnection("192.0.2.6"),
                attributes=[SDPAttribute("rtpmap", "101 telephone-event/8000")],
                bandwidth_info=[SDPBandwidthInfo("AS", 80)],
            )
        ],
    )
    assert str(session) == (
        "v=0\r\no=- 11 12 IN IP4 192.0.2.5\r\ns=sipsimple\r\ni=a call\r\nc=IN IP4 192.0.2.5\r\n"
        "b=CT:100\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=audio 5004 RTP/AVP 0 101\r\ni=voice\r\n"
        "c=IN IP4 192.0.2.6\r\nb=AS:80\r\na=rtpmap:101 telephone-event/8000\r\n"
    )
    assert SDPSession.parse(str(session)) == session


@pytest.mark.parametrize(
    "change",
    [
        lambda s: setattr(s, "address", ""),
        lambda s: setattr(s, "address", "two words"),
        lambda s: setattr(s, "name", "line\r\nbreak"),
        lambda s: setattr(s, "user", " "),
        lambda s: setattr(s, "version", -1),
        lambda s: s.attributes.append(SDPAttribute("bad:name", "x")),
        lambda s: s.attributes.append(SDPAttribute("x", "injected\r\nm=video 1 RTP/AVP 31")),
        lambda s: s.media.append(SDPMediaStream("audio", 70000, "RTP/AVP", formats=["0"])),
        lambda s: s.media.append(SDPMediaStream("audio", 1, "RTP/AVP", formats=["0 8"])),
        lambda s: s.bandwidth_info.append(SDPBandwidthInfo("AS", -5)),
        lambda s: setattr(s, "extra_lines", [("m", "audio 1 RTP/AVP 0")]),
        lambda s: setattr(s, "extra_lines", [("zz", "x")]),
    ],
)
def test_writer_refuses_what_it_cannot_write_faithfully(change):
    session = SDPSession("192.0.2.1", id=1, version=1)
    change(session)
    with pytest.raises(ValueError):
        str(session)


# --- mutable and frozen ------------------------------------------------------------------------


def test_new_converts_both_ways_and_equality_crosses_the_pair():
    frozen = FrozenSDPSession.parse(read("spec_audio_stream.sdp"))
    mutable = SDPSession.new(frozen)
    assert mutable == frozen and frozen == mutable
    assert FrozenSDPSession.new(frozen) is frozen
    assert FrozenSDPSession.new(mutable) == frozen
    assert isinstance(mutable.media[0], SDPMediaStream)
    assert isinstance(mutable.media[0].attributes, SDPAttributeList)
    assert isinstance(mutable.connection, SDPConnection)
    mutable.media[0].port = 40000
    assert mutable != frozen and frozen.media[0].port == 55328
    copy_ = SDPSession.new(mutable)
    copy_.media[0].attributes.append(SDPAttribute("ptime", "20"))
    assert "ptime" not in mutable.media[0].attributes


def test_frozen_objects_are_immutable_and_hashable():
    frozen = FrozenSDPSession.parse(read("spec_audio_stream.sdp"))
    with pytest.raises(AttributeError):
        frozen.version = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        frozen.media[0].port = 1  # type: ignore[misc]
    with pytest.raises(AttributeError):
        frozen.media[0].attributes.append(FrozenSDPAttribute("x"))  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        hash(SDPSession.new(frozen))
    again = FrozenSDPSession.parse(str(frozen))
    assert hash(again) == hash(frozen) and len({frozen, again}) == 1
    assert {FrozenSDPAttribute("a", "1"), FrozenSDPAttribute("a", "1")} == {
        FrozenSDPAttribute("a", "1")
    }


def test_pickle_and_deepcopy_keep_the_description():
    for obj in (
        FrozenSDPSession.parse(read("spec_audio_stream.sdp")),
        SDPSession.parse(read("spec_chat_stream.sdp")),
        MediaCodec("opus", 48000, 2),
    ):
        assert pickle.loads(pickle.dumps(obj)) == obj
        assert copy.deepcopy(obj) == obj


def test_mutable_lists_are_coerced_and_looked_up_by_name():
    media = SDPMediaStream("audio", 5004, "RTP/AVP", formats=("0",))
    media.attributes = [SDPAttribute("rtpmap", "0 PCMU/8000"), SDPAttribute("ptime", "20")]
    assert isinstance(media.attributes, SDPAttributeList)
    assert media.attributes.getfirst("missing", "default") == "default"
    assert media.attributes.getall("ptime") == ["20"]
    assert SDPAttribute("ptime", "20") in media.attributes
    assert SDPAttribute("ptime", "30") not in media.attributes
    assert media.attributes == FrozenSDPAttributeList(
        [FrozenSDPAttribute("rtpmap", "0 PCMU/8000"), FrozenSDPAttribute("ptime", "20")]
    )
    assert media.formats == ["0"]


def test_direction_property_reads_and_replaces_the_attribute():
    media = SDPMediaStream("audio", 5004, "RTP/AVP", formats=["0"])
    assert media.direction == "sendrecv"
    media.attributes.append(SDPAttribute("recvonly"))
    assert media.direction == "recvonly"
    media.direction = "inactive"
    assert [a.name for a in media.attributes] == ["inactive"]
    media.direction = "sendrecv"
    assert str(media) == "m=audio 5004 RTP/AVP 0\r\na=sendrecv\r\n"
    with pytest.raises(ValueError, match="direction must be one of"):
        media.direction = "hold"


def test_codec_helpers():
    media = SDPMediaStream.parse(
        "m=audio 5004 RTP/SAVP 111 0 18 97 13\n"
        "a=rtpmap:111 opus/48000/2\n"
        "a=fmtp:111 minptime=10;useinbandfec=1\n"
        "a=rtpmap:0 PCMU/8000\n"
    )
    assert media.is_rtp and media.has_srtp and not media.has_ice_attributes
    assert media.codec_list == [
        MediaCodec("opus", 48000, 2),
        MediaCodec("PCMU", 8000),
        MediaCodec("G729", 8000),
        None,
        MediaCodec("CN", 8000),
    ]
    assert str(media.codec_list[0]) == "opus/48000/2" and str(media.codec_list[1]) == "PCMU/8000"
    assert media.fmtp("111") == "minptime=10;useinbandfec=1"
    assert MediaCodec("PCMU", 8000) == MediaCodec("pcmu", 8000) != MediaCodec("PCMU", 16000)
    assert STATIC_PAYLOAD_TYPES[9] == MediaCodec("G722", 8000)


def test_default_session_identity_is_random_and_version_starts_at_the_id():
    first, second = SDPSession("192.0.2.1"), SDPSession("192.0.2.1")
    assert first.id != second.id
    assert first.version == first.id > 0
    assert FrozenSDPSession("192.0.2.1", id=5).version == 5


def test_a_frozen_session_is_written_once_and_as_its_mutable_copy():
    mutable = SDPSession.parse(
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio 5000 RTP/AVP 0\r\na=sendrecv\r\n"
    )
    frozen = FrozenSDPSession.new(mutable)
    text = str(frozen)
    assert text == str(mutable) and str(frozen) is text
    assert pickle.loads(pickle.dumps(frozen)) == frozen
    bad = FrozenSDPSession.new(mutable)
    broken = SDPSession.new(bad)
    broken.name = "two\r\nlines"
    with pytest.raises(ValueError):
        str(FrozenSDPSession.new(broken))
