"""SRTP (RFC 3711) keyed through SDP security descriptions (SDES, RFC 4568; AEAD suites RFC 7714).

Three parts: ``CryptoAttribute`` parses and writes a=crypto values; ``SDESNegotiator`` is the
sans-IO offer/answer logic that turns the account's policy and the peer's description into
``SRTPParameters``; ``SRTPSession`` protects what we send and checks what we receive with
pylibsrtp (libsrtp). Keys never appear in a repr, so logging these objects leaks nothing.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pylibsrtp

from sipsimple.core.sdp.model import BaseSDPMediaStream, SDPAttribute
from sipsimple.media.errors import MediaError

__all__ = [
    "DEFAULT_SUITES",
    "MAX_PROTECT_SIZE",
    "POLICIES",
    "SUITES",
    "CryptoAttribute",
    "CryptoSuite",
    "KeyParameter",
    "SDESNegotiationError",
    "SDESNegotiator",
    "SDESOffer",
    "SDESParseError",
    "SDESStateError",
    "SRTPAuthenticationError",
    "SRTPError",
    "SRTPParameters",
    "SRTPReplayError",
    "SRTPSession",
]


class SRTPError(MediaError):
    """A packet libsrtp would not protect or unprotect; the caller drops it and counts it."""


class SRTPAuthenticationError(SRTPError):
    """The packet's authentication tag is wrong: it was altered, or keyed with another key."""


class SRTPReplayError(SRTPError):
    """The packet was already received, or is older than the replay window."""


class SDESParseError(ValueError):
    """An a=crypto value against RFC 4568 section 9, or with a key of the wrong size."""


class SDESNegotiationError(Exception):
    """The peer's description leaves no acceptable way to key SRTP; an offer gets a 488."""

    code = 488


class SDESStateError(RuntimeError):
    """An SDESNegotiator method was called when it makes no sense (an answer without our offer)."""


@dataclass(frozen=True)
class CryptoSuite:
    """What SDES needs to know of a suite: its libsrtp profile and the size of its key and salt."""

    name: str
    profile: int
    key_length: int
    salt_length: int

    @property
    def key_salt_length(self) -> int:
        """The size of the inline key-salt value: master key then master salt."""
        return self.key_length + self.salt_length


_Policy = pylibsrtp.Policy
SUITES: dict[str, CryptoSuite] = {
    suite.name: suite
    for suite in (
        CryptoSuite("AEAD_AES_256_GCM", _Policy.SRTP_PROFILE_AEAD_AES_256_GCM, 32, 12),
        CryptoSuite("AEAD_AES_128_GCM", _Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 16, 12),
        CryptoSuite("AES_CM_128_HMAC_SHA1_80", _Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 16, 14),
        CryptoSuite("AES_CM_128_HMAC_SHA1_32", _Policy.SRTP_PROFILE_AES128_CM_SHA1_32, 16, 14),
    )
}
# Strongest first: an answerer takes the first line it supports.
DEFAULT_SUITES: tuple[str, ...] = tuple(SUITES)
# "opportunistic" and "sdes_optional" offer crypto in RTP/AVP and fall back to plain RTP;
# "sdes_mandatory" offers RTP/SAVP and refuses a peer that cannot do SRTP.
POLICIES = ("opportunistic", "sdes_optional", "sdes_mandatory")
# pylibsrtp works in a 1500-byte buffer and keeps room for the largest trailer.
MAX_PROTECT_SIZE = 1500 - 16 - 128 - 4

_MAX_LIFETIME = 1 << 48  # RFC 3711 section 9.2 (and RFC 7714 section 14.2) for SRTP
_MAX_WINDOW = 0x7FFF  # the largest replay window libsrtp accepts
_TAG = re.compile(r"[0-9]{1,9}")
_SUITE_NAME = re.compile(r"[A-Za-z0-9_]+")
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_LIFETIME = re.compile(r"(2\^)?([0-9]{1,20})")
_MKI = re.compile(r"([0-9]{1,40}):([0-9]{1,3})")


@dataclass(frozen=True)
class KeyParameter:
    """One inline key: master key and salt together, an optional lifetime and MKI.

    ``mki`` is (value, length in bytes). The lifetime is written back as ``2^n`` when it is
    a power of two, so ``|1048576|`` round-trips as ``|2^20|`` (the same value).
    """

    key_salt: bytes = field(repr=False)
    lifetime: int | None = None
    mki: tuple[int, int] | None = None

    @classmethod
    def parse(cls, text: str, suite: str | None = None) -> KeyParameter:
        """Parse ``inline:<key-salt>[|lifetime][|mki:length]``; a known suite checks the size."""
        method, colon, info = text.partition(":")
        if not colon:
            raise SDESParseError(f"key parameter {_clip(text)!r} has no key method")
        if method.lower() != "inline":
            raise SDESParseError(f"key method {method!r} is not supported (only inline)")
        key_text, *extra = info.split("|")
        if len(extra) > 2:
            raise SDESParseError("key parameter has more than a lifetime and an MKI after the key")
        lifetime = mki = None
        for position, item in enumerate(extra):
            if ":" in item:
                if position != len(extra) - 1:
                    raise SDESParseError("the MKI must be the last field of a key parameter")
                mki = _parse_mki(item)
            elif position == 0:
                lifetime = _parse_lifetime(item)
            else:
                raise SDESParseError(f"unexpected key parameter field {_clip(item)!r}")
        key_salt = _decode_key(key_text)
        known = SUITES.get(suite) if suite is not None else None
        if known is not None and len(key_salt) != known.key_salt_length:
            raise SDESParseError(
                f"{known.name} needs a {known.key_salt_length}-byte key and salt, "
                f"got {len(key_salt)} bytes"
            )
        return cls(key_salt, lifetime, mki)

    def __str__(self) -> str:
        text = "inline:" + base64.b64encode(self.key_salt).decode("ascii")
        if self.lifetime is not None:
            exponent = self.lifetime.bit_length() - 1
            power = self.lifetime == 1 << exponent
            text += f"|2^{exponent}" if power else f"|{self.lifetime}"
        if self.mki is not None:
            text += f"|{self.mki[0]}:{self.mki[1]}"
        return text


def _clip(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def _decode_key(text: str) -> bytes:
    if _BASE64.fullmatch(text) is None:
        raise SDESParseError("the inline key is not base64")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise SDESParseError("the inline key is not valid base64") from None


def _parse_lifetime(text: str) -> int:
    match = _LIFETIME.fullmatch(text)
    if match is None:
        raise SDESParseError(f"key lifetime {_clip(text)!r} is not a number or 2^n")
    number = int(match.group(2))
    if match.group(1):
        if number > 64:
            raise SDESParseError(f"key lifetime 2^{number} is out of range")
        return 1 << number
    if number == 0:
        raise SDESParseError("key lifetime 0 is out of range")
    return number


def _parse_mki(text: str) -> tuple[int, int]:
    match = _MKI.fullmatch(text)
    if match is None:
        raise SDESParseError(f"MKI {_clip(text)!r} is not value:length")
    value, length = int(match.group(1)), int(match.group(2))
    if not 1 <= length <= 128 or value >= 1 << (8 * length):
        raise SDESParseError(f"MKI {value}:{length} does not fit its length (1 to 128 bytes)")
    return value, length


@dataclass(frozen=True)
class CryptoAttribute:
    """The value of an a=crypto line: ``tag suite key-params *(session-param)``.

    Suites we do not know parse too (their key size is not checked), so a negotiator can skip
    them by name rather than fail on them.
    """

    tag: int
    suite: str
    key_parameters: tuple[KeyParameter, ...]
    session_parameters: tuple[str, ...] = ()

    @classmethod
    def parse(cls, value: str) -> CryptoAttribute:
        """Parse the text after ``a=crypto:``; raises SDESParseError saying what is wrong."""
        fields = value.split()
        if len(fields) < 3:
            raise SDESParseError("a=crypto needs a tag, a crypto suite and key parameters")
        tag, suite, keys, *session = fields
        if _TAG.fullmatch(tag) is None:
            raise SDESParseError(f"a=crypto tag {_clip(tag)!r} is not 1 to 9 digits")
        if _SUITE_NAME.fullmatch(suite) is None:
            raise SDESParseError(f"crypto suite {_clip(suite)!r} is not a suite name")
        key_parameters = tuple(KeyParameter.parse(text, suite) for text in keys.split(";"))
        return cls(int(tag), suite, key_parameters, tuple(session))

    @property
    def key_salt(self) -> bytes:
        """The master key and salt of the first key parameter (the only one we ever use)."""
        return self.key_parameters[0].key_salt

    def to_sdp_attribute(self) -> SDPAttribute:
        return SDPAttribute("crypto", str(self))

    def __str__(self) -> str:
        keys = ";".join(str(key) for key in self.key_parameters)
        return " ".join([str(self.tag), self.suite, keys, *self.session_parameters])


@dataclass(frozen=True)
class SDESOffer:
    """Our side of an offer: the m= line transport and the a=crypto lines, best first."""

    transport: str
    crypto: tuple[CryptoAttribute, ...]

    def attributes(self) -> list[SDPAttribute]:
        return [attribute.to_sdp_attribute() for attribute in self.crypto]


@dataclass(frozen=True)
class SRTPParameters:
    """The outcome of SDES: the suite, the key we send with and the key the peer sends with.

    ``local_crypto`` is our a=crypto line for this choice (the one to put in an answer);
    ``window_size`` is the replay window the peer hinted with WSH, if it did. A re-INVITE that
    yields unequal parameters means the SRTP session must be created again.
    """

    suite: str
    tag: int
    local_key: bytes = field(repr=False)
    remote_key: bytes = field(repr=False)
    local_crypto: CryptoAttribute
    window_size: int | None = None

    def create_session(self) -> SRTPSession:
        return SRTPSession(self.suite, self.local_key, self.remote_key, self.window_size)


def _secure_profile(transport: str) -> bool:
    """True for RTP/SAVP(F), False for RTP/AVP(F); DTLS-SRTP and non-RTP profiles are refused."""
    profile = transport.upper()
    if profile.startswith(("UDP/TLS/", "TCP/TLS/", "TCP/DTLS/")):
        raise SDESNegotiationError(f"{transport} is DTLS-SRTP, which is not supported")
    if profile in ("RTP/SAVP", "RTP/SAVPF"):
        return True
    if profile in ("RTP/AVP", "RTP/AVPF"):
        return False
    raise SDESNegotiationError(f"{transport} is not an RTP profile SDES can key")


class SDESNegotiator:
    """RFC 4568 offer/answer for one media stream; sans-IO and fresh random keys every time.

    ``policy`` is the account's key negotiation setting (see POLICIES) and ``suites`` the
    suites we accept, in our order of preference. ``random_bytes`` makes keys (a test can
    pass a deterministic one).
    """

    def __init__(
        self,
        policy: str = "opportunistic",
        suites: Sequence[str] = DEFAULT_SUITES,
        *,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"SRTP key negotiation must be one of {', '.join(POLICIES)}")
        unknown = [suite for suite in suites if suite not in SUITES]
        if unknown or not suites or len(set(suites)) != len(suites):
            raise ValueError(
                f"suites must be distinct names among {', '.join(SUITES)}, got {list(suites)}"
            )
        self.policy = policy
        self.suites = tuple(suites)
        self._random_bytes = random_bytes
        self._offered: dict[int, CryptoAttribute] | None = None

    @property
    def mandatory(self) -> bool:
        return self.policy == "sdes_mandatory"

    def make_offer(self) -> SDESOffer:
        """One a=crypto line per suite (tags 1, 2, ...) in RTP/SAVP if SRTP is mandatory."""
        crypto = tuple(
            self._new_attribute(tag, suite) for tag, suite in enumerate(self.suites, start=1)
        )
        self._offered = {attribute.tag: attribute for attribute in crypto}
        return SDESOffer("RTP/SAVP" if self.mandatory else "RTP/AVP", crypto)

    def answer_offer(self, offer: BaseSDPMediaStream) -> SRTPParameters | None:
        """Pick the peer's first a=crypto line we can use; None means answer with plain RTP.

        Raises SDESNegotiationError when SRTP is required (an RTP/SAVP offer, or our policy
        is sdes_mandatory) and no line is usable.
        """
        required = _secure_profile(offer.transport) or self.mandatory
        reasons = []
        for value in offer.attributes.getall("crypto"):
            try:
                remote = CryptoAttribute.parse(value)
            except SDESParseError as exc:
                reasons.append(f"unparsable line ({exc})")
                continue
            reason = self._unusable(remote)
            if reason is not None:
                reasons.append(f"tag {remote.tag} {remote.suite}: {reason}")
                continue
            local = self._new_attribute(remote.tag, remote.suite)
            return self._parameters(local, remote)
        if required:
            detail = "; ".join(reasons) if reasons else "it has none"
            raise SDESNegotiationError(
                f"SRTP is required but no a=crypto line of the {offer.transport} offer "
                f"is acceptable: {detail}"
            )
        return None

    def accept_answer(self, answer: BaseSDPMediaStream) -> SRTPParameters | None:
        """Check the answer against our last offer; None means the peer chose plain RTP."""
        if self._offered is None:
            raise SDESStateError("there is no offer of ours waiting for an answer")
        offered, self._offered = self._offered, None
        values = answer.attributes.getall("crypto")
        if not values:
            if self.mandatory or _secure_profile(answer.transport):
                raise SDESNegotiationError("the answer has no a=crypto line but SRTP is required")
            return None
        if len(values) > 1:
            raise SDESNegotiationError(
                f"the answer has {len(values)} a=crypto lines where RFC 4568 allows one"
            )
        try:
            remote = CryptoAttribute.parse(values[0])
        except SDESParseError as exc:
            raise SDESNegotiationError(f"the answer's a=crypto line is invalid: {exc}") from None
        local = offered.get(remote.tag)
        if local is None:
            raise SDESNegotiationError(f"the answer's a=crypto tag {remote.tag} was not offered")
        if local.suite != remote.suite:
            raise SDESNegotiationError(
                f"the answer's a=crypto tag {remote.tag} has suite {remote.suite}, "
                f"but {local.suite} was offered with that tag"
            )
        reason = self._unusable(remote)
        if reason is not None:
            raise SDESNegotiationError(f"the answer's a=crypto line is not usable: {reason}")
        return self._parameters(local, remote)

    def _new_attribute(self, tag: int, suite: str) -> CryptoAttribute:
        key_salt = self._random_bytes(SUITES[suite].key_salt_length)
        return CryptoAttribute(tag, suite, (KeyParameter(key_salt),))

    def _unusable(self, remote: CryptoAttribute) -> str | None:
        """Why we cannot run SRTP with this line, or None if we can."""
        if remote.suite not in self.suites:
            return "crypto suite not supported"
        if len(remote.key_parameters) != 1 or remote.key_parameters[0].mki is not None:
            return "MKI (and several keys) not supported"
        lifetime = remote.key_parameters[0].lifetime
        if lifetime is not None and lifetime > _MAX_LIFETIME:
            return "key lifetime above 2^48"
        for parameter in remote.session_parameters:
            # Unknown parameters are mandatory unless they start with "-" (section 6.3.7).
            name, _, value = parameter.partition("=")
            if parameter.startswith("-") or _window_hint(parameter) is not None:
                continue
            if name == "FEC_ORDER" and value in ("FEC_SRTP", "SRTP_FEC"):
                continue  # only matters with FEC, which we do not send
            return f"session parameter {_clip(parameter)} not supported"
        return None

    @staticmethod
    def _parameters(local: CryptoAttribute, remote: CryptoAttribute) -> SRTPParameters:
        hints = [_window_hint(p) for p in remote.session_parameters]
        window = next((hint for hint in hints if hint is not None), None)
        return SRTPParameters(
            local.suite, local.tag, local.key_salt, remote.key_salt, local, window
        )


def _window_hint(parameter: str) -> int | None:
    """The replay window of a WSH=n parameter (n >= 64, section 6.3.6), capped for libsrtp."""
    name, _, value = parameter.partition("=")
    if name != "WSH" or not value.isdigit() or len(value) > 9 or int(value) < 64:
        return None
    return min(int(value), _MAX_WINDOW)


class SRTPSession:
    """SRTP and SRTCP for one RTP session: our key protects, the peer's key unprotects.

    Any SSRC is accepted in either direction. Sending the same packet twice is allowed (RFC
    4733 repeats its end-of-event packets with one sequence number); receiving one twice is a
    replay. Unprotect never raises anything but SRTPError subclasses, whatever the bytes.
    """

    def __init__(
        self, suite: str, local_key: bytes, remote_key: bytes, window_size: int | None = None
    ) -> None:
        info = SUITES.get(suite)
        if info is None:
            raise ValueError(f"crypto suite must be one of {', '.join(SUITES)}, got {suite!r}")
        for name, key in (("local_key", local_key), ("remote_key", remote_key)):
            if not isinstance(key, bytes) or len(key) != info.key_salt_length:
                raise ValueError(f"{name} must be {info.key_salt_length} bytes for {suite}")
        if window_size is not None and not 64 <= window_size <= _MAX_WINDOW:
            raise ValueError(f"window_size must be between 64 and {_MAX_WINDOW}")
        self.suite = suite
        outbound = _Policy(local_key, _Policy.SSRC_ANY_OUTBOUND, srtp_profile=info.profile)
        outbound.allow_repeat_tx = True
        inbound = _Policy(remote_key, _Policy.SSRC_ANY_INBOUND, srtp_profile=info.profile)
        if window_size is not None:
            inbound.window_size = window_size
        self._tx = pylibsrtp.Session(outbound)
        self._rx = pylibsrtp.Session(inbound)

    def protect(self, packet: bytes) -> bytes:
        """Encrypt and authenticate an RTP packet (at most MAX_PROTECT_SIZE bytes)."""
        return _run(self._tx.protect, packet)

    def unprotect(self, packet: bytes) -> bytes:
        """Check and decrypt an SRTP packet; SRTPError (or a subclass) means drop it."""
        return _run(self._rx.unprotect, packet)

    def protect_rtcp(self, packet: bytes) -> bytes:
        return _run(self._tx.protect_rtcp, packet)

    def unprotect_rtcp(self, packet: bytes) -> bytes:
        return _run(self._rx.unprotect_rtcp, packet)

    def __repr__(self) -> str:
        return f"SRTPSession({self.suite})"


def _run(function: Callable[[bytes], bytes], packet: bytes) -> bytes:
    if type(packet) is not bytes:
        packet = bytes(packet)
    try:
        return function(packet)
    except pylibsrtp.Error as exc:
        message = str(exc)
        if message == "authentication failure":
            raise SRTPAuthenticationError("SRTP authentication failed") from None
        if message.startswith("replay check failed"):
            raise SRTPReplayError(f"SRTP {message}") from None
        raise SRTPError(f"libsrtp refused a {len(packet)}-byte packet: {message}") from None
    except ValueError:
        raise SRTPError(f"a {len(packet)}-byte packet is too long for SRTP") from None
