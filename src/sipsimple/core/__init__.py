"""The SIP core: sans-IO protocol machines and the asyncio objects built on them."""

from sipsimple.core.engine import Engine, EngineError
from sipsimple.core.errors import SDPParseError, SIPCoreError, SIPParseError
from sipsimple.core.invitation import Invitation, InvitationStateError
from sipsimple.core.publication import Publication
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
from sipsimple.core.sip.message import (
    MalformedSIPMessageError,
    SIPHeaders,
    SIPMessage,
    SIPRequest,
    SIPResponse,
    parse_message,
)

__all__ = [
    "AuthenticationError",
    "Credentials",
    "CredentialsRejectedError",
    "DigestAuthenticator",
    "Engine",
    "EngineError",
    "FrozenSDPAttribute",
    "FrozenSDPAttributeList",
    "FrozenSDPBandwidthInfo",
    "FrozenSDPBandwidthInfoList",
    "FrozenSDPConnection",
    "FrozenSDPMediaStream",
    "FrozenSDPSession",
    "IncomingRequest",
    "Invitation",
    "InvitationStateError",
    "MalformedSIPMessageError",
    "MediaCodec",
    "Message",
    "Publication",
    "Registration",
    "Request",
    "RequestStateError",
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
    "parse_message",
]
