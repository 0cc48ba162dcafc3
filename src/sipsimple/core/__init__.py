"""The SIP core: sans-IO protocol machines and the asyncio objects built on them."""

import importlib

from sipsimple.core.engine import Engine, EngineError
from sipsimple.core.errors import SDPParseError, SIPCoreError, SIPParseError
from sipsimple.core.invitation import Invitation, InvitationStateError
from sipsimple.core.publication import Publication
from sipsimple.core.referral import IncomingReferral, Referral, ReferralListener
from sipsimple.core.registration import Registration
from sipsimple.core.request import IncomingRequest, Message, Request, RequestStateError
from sipsimple.core.sdp import (
    FrozenSDPAttribute,
    FrozenSDPAttributeList,
    FrozenSDPBandwidthInfo,
    FrozenSDPBandwidthInfoList,
    FrozenSDPConnection,
    FrozenSDPMediaStream,
    FrozenSDPSession,
    MediaCodec,
    SDPAttribute,
    SDPAttributeList,
    SDPBandwidthInfo,
    SDPBandwidthInfoList,
    SDPConnection,
    SDPMediaStream,
    SDPNegotiationError,
    SDPNegotiator,
    SDPNegotiatorStateError,
    SDPSession,
)
from sipsimple.core.sip.auth import (
    AuthenticationError,
    Credentials,
    CredentialsRejectedError,
    DigestAuthenticator,
)
from sipsimple.core.sip.dialog import (
    Dialog,
    DialogError,
    DialogID,
    DialogLayer,
    DialogSet,
    DialogState,
)
from sipsimple.core.sip.framer import InvalidMessage, KeepAlivePing, KeepAlivePong, SIPStreamFramer
from sipsimple.core.sip.grammar import frozendict
from sipsimple.core.sip.headers import (
    BaseHeader,
    ContactHeader,
    ContentTypeHeader,
    CSeq,
    EventHeader,
    FromHeader,
    FrozenContactHeader,
    FrozenContentTypeHeader,
    FrozenEventHeader,
    FrozenFromHeader,
    FrozenHeader,
    FrozenReasonHeader,
    FrozenRecordRouteHeader,
    FrozenReferToHeader,
    FrozenReplacesHeader,
    FrozenRetryAfterHeader,
    FrozenRouteHeader,
    FrozenSubjectHeader,
    FrozenSubscriptionStateHeader,
    FrozenToHeader,
    FrozenViaHeader,
    FrozenWarningHeader,
    Header,
    ReasonHeader,
    RecordRouteHeader,
    ReferToHeader,
    ReplacesHeader,
    RetryAfterHeader,
    RouteHeader,
    SubjectHeader,
    SubscriptionStateHeader,
    ToHeader,
    ViaHeader,
    WarningHeader,
)
from sipsimple.core.sip.message import (
    MalformedSIPMessageError,
    SIPHeaders,
    SIPMessage,
    SIPRequest,
    SIPResponse,
    parse_message,
)
from sipsimple.core.sip.multipart import BodyPart, split_multipart
from sipsimple.core.sip.timers import TimerSettings
from sipsimple.core.sip.transaction import (
    TransactionError,
    TransactionLayer,
    TransactionLimitError,
    TransactionState,
    TransactionStateError,
)
from sipsimple.core.sip.uri import SIPURI, BaseSIPURI, FrozenSIPURI, OpaqueURI, parse_uri
from sipsimple.core.subscription import IncomingSubscription, Subscription

# The media objects the core exposes load on first use (PEP 562): they bring numpy and
# PyAV, which a program that only signals (or `sipsimple settings`) does not need.
_MEDIA = {
    "SoundDeviceError": "sipsimple.media.devices",
    "default_input_device": "sipsimple.media.devices",
    "default_output_device": "sipsimple.media.devices",
    "input_devices": "sipsimple.media.devices",
    "output_devices": "sipsimple.media.devices",
    "refresh_sound_devices": "sipsimple.media.devices",
    "AudioMixer": "sipsimple.media.mixer",
    "MixerError": "sipsimple.media.mixer",
    "MixerPort": "sipsimple.media.mixer",
    "ToneGenerator": "sipsimple.media.tones",
    "RecordingWaveFile": "sipsimple.media.wave",
    "WaveFile": "sipsimple.media.wave",
    "WaveFileError": "sipsimple.media.wave",
}


def __getattr__(name: str) -> object:
    module = _MEDIA.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MEDIA))


__all__ = [
    "SIPURI",
    "AudioMixer",
    "AuthenticationError",
    "BaseHeader",
    "BaseSIPURI",
    "BodyPart",
    "CSeq",
    "ContactHeader",
    "ContentTypeHeader",
    "Credentials",
    "CredentialsRejectedError",
    "Dialog",
    "DialogError",
    "DialogID",
    "DialogLayer",
    "DialogSet",
    "DialogState",
    "DigestAuthenticator",
    "Engine",
    "EngineError",
    "EventHeader",
    "FromHeader",
    "FrozenContactHeader",
    "FrozenContentTypeHeader",
    "FrozenEventHeader",
    "FrozenFromHeader",
    "FrozenHeader",
    "FrozenReasonHeader",
    "FrozenRecordRouteHeader",
    "FrozenReferToHeader",
    "FrozenReplacesHeader",
    "FrozenRetryAfterHeader",
    "FrozenRouteHeader",
    "FrozenSDPAttribute",
    "FrozenSDPAttributeList",
    "FrozenSDPBandwidthInfo",
    "FrozenSDPBandwidthInfoList",
    "FrozenSDPConnection",
    "FrozenSDPMediaStream",
    "FrozenSDPSession",
    "FrozenSIPURI",
    "FrozenSubjectHeader",
    "FrozenSubscriptionStateHeader",
    "FrozenToHeader",
    "FrozenViaHeader",
    "FrozenWarningHeader",
    "Header",
    "IncomingReferral",
    "IncomingRequest",
    "IncomingSubscription",
    "InvalidMessage",
    "Invitation",
    "InvitationStateError",
    "KeepAlivePing",
    "KeepAlivePong",
    "MalformedSIPMessageError",
    "MediaCodec",
    "Message",
    "MixerError",
    "MixerPort",
    "OpaqueURI",
    "Publication",
    "ReasonHeader",
    "RecordRouteHeader",
    "RecordingWaveFile",
    "ReferToHeader",
    "Referral",
    "ReferralListener",
    "Registration",
    "ReplacesHeader",
    "Request",
    "RequestStateError",
    "RetryAfterHeader",
    "RouteHeader",
    "SDPAttribute",
    "SDPAttributeList",
    "SDPBandwidthInfo",
    "SDPBandwidthInfoList",
    "SDPConnection",
    "SDPMediaStream",
    "SDPNegotiationError",
    "SDPNegotiator",
    "SDPNegotiatorStateError",
    "SDPParseError",
    "SDPSession",
    "SIPCoreError",
    "SIPHeaders",
    "SIPMessage",
    "SIPParseError",
    "SIPRequest",
    "SIPResponse",
    "SIPStreamFramer",
    "SoundDeviceError",
    "SubjectHeader",
    "Subscription",
    "SubscriptionStateHeader",
    "TimerSettings",
    "ToHeader",
    "ToneGenerator",
    "TransactionError",
    "TransactionLayer",
    "TransactionLimitError",
    "TransactionState",
    "TransactionStateError",
    "ViaHeader",
    "WarningHeader",
    "WaveFile",
    "WaveFileError",
    "default_input_device",
    "default_output_device",
    "frozendict",
    "input_devices",
    "output_devices",
    "parse_message",
    "parse_uri",
    "refresh_sound_devices",
    "split_multipart",
]
