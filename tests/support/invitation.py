"""Invitation helpers for tests: SDP builders, and functions that drive Invitations in a
:class:`~tests.support.remote.RemoteSDK` child (they run on its SIP thread).

SDP travels between the test and the child as text (``offer(...)`` builds it); in the
child the Invitations live in a registry under names the test picks: incoming ones are
named ``"in1"``, ``"in2"``... in arrival order. ``answer_calls(script)`` makes the child
answer each new INVITE from a script of (code, with_sdp, delay) steps, and
``answer_proposals(...)`` makes it accept (or refuse) every re-INVITE.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sipsimple.core import Engine, Invitation, SDPSession
from sipsimple.core.sdp import SDPAttribute, SDPConnection, SDPMediaStream
from sipsimple.core.sip.headers import ContactHeader, FromHeader, RouteHeader, ToHeader
from sipsimple.core.sip.uri import SIPURI
from sipsimple.notification import NotificationCenter

__all__ = [
    "answer_calls",
    "answer_proposals",
    "call",
    "configure",
    "contact",
    "info",
    "invoke",
    "names",
    "offer",
    "reset",
    "session",
]

LOOPBACK = "127.0.0.1"
_invitations: dict[str, Invitation] = {}
_observers: list[Any] = []
_SETTINGS = ("session_expires", "min_se", "require_100rel")
_DEFAULTS = {name: getattr(Invitation, name) for name in _SETTINGS}


def offer(*streams: tuple[str, int, str], address: str = LOOPBACK) -> str:
    """An SDP (text) with one m-line per (media, port, direction): audio lines offer PCMU
    and PCMA, message lines an MSRP path."""
    media = []
    for kind, port, direction in streams:
        if kind == "audio":
            line = SDPMediaStream(
                "audio",
                port,
                "RTP/AVP",
                formats=["0", "8"],
                attributes=[
                    SDPAttribute("rtpmap", "0 PCMU/8000"),
                    SDPAttribute("rtpmap", "8 PCMA/8000"),
                    SDPAttribute(direction, ""),
                ],
            )
        else:
            line = SDPMediaStream(
                "message",
                port,
                "TCP/MSRP",
                formats=["*"],
                attributes=[
                    SDPAttribute("accept-types", "text/plain"),
                    SDPAttribute("path", f"msrp://{address}:{port}/s;tcp"),
                    SDPAttribute(direction, ""),
                ],
            )
        media.append(line)
    return str(SDPSession(address, connection=SDPConnection(address), media=media))


def session(text: str | None) -> SDPSession | None:
    return SDPSession.parse(text) if text is not None else None


def contact(port: int, user: str = "test", transport: str = "udp") -> ContactHeader:
    parameters = {} if transport == "udp" else {"transport": transport}
    return ContactHeader(SIPURI(user=user, host=LOOPBACK, port=port, parameters=parameters))


# -- in the child -------------------------------------------------------------------------


def configure(**attributes: Any) -> None:
    """Set Invitation class attributes (session_expires, min_se, require_100rel)."""
    for name, value in attributes.items():
        if name not in _SETTINGS:
            raise ValueError(f"not an Invitation setting: {name}")
        setattr(Invitation, name, value)


def reset() -> None:
    """Forget the Invitations and answering rules, restore the default settings."""
    center = NotificationCenter()
    for observer in _observers:
        center.discard_observer(observer, "SIPInvitationChangedState")
    _observers.clear()
    _invitations.clear()
    for name, value in _DEFAULTS.items():
        setattr(Invitation, name, value)


def call(
    name: str,
    target: str,
    sdp: str,
    route_port: int | None = None,
    transport: str = "udp",
    user: str = "alice",
    domain: str = LOOPBACK,
    timeout: float | None = None,
    password: str | None = None,
) -> None:
    """Send an INVITE to the URI ``target`` (through a proxy on ``route_port``)."""
    from sipsimple.core import Credentials

    engine = Engine()
    uri = SIPURI.parse(target)
    port = {"udp": engine.udp_port, "tcp": engine.tcp_port, "tls": engine.tls_port}[transport]
    route = None
    if route_port is not None:
        route = RouteHeader(
            SIPURI(host=LOOPBACK, port=route_port, parameters={"transport": transport})
        )
    invitation = Invitation()
    _invitations[name] = invitation
    credentials = Credentials(user, password) if password is not None else None
    invitation.send_invite(
        uri,
        FromHeader(SIPURI(user=user, host=domain)),
        ToHeader(uri),
        route,
        contact(port, user, transport),  # type: ignore[arg-type]
        session(sdp),  # type: ignore[arg-type]
        credentials,
        timeout=timeout,
    )


def answer_calls(script: list[tuple[int, bool, float]], sdp: str) -> None:
    """Answer every new INVITE with the (code, with_sdp, delay) steps of ``script``."""

    def incoming(notification: Any) -> None:
        if notification.data.state != "incoming":
            return
        invitation = notification.sender
        _invitations[f"in{sum(k.startswith('in') for k in _invitations) + 1}"] = invitation
        asyncio.get_running_loop().create_task(_play(invitation, script, sdp))

    _observe(incoming, "SIPInvitationChangedState")


async def _play(invitation: Invitation, script: list[tuple[int, bool, float]], sdp: str) -> None:
    for code, with_sdp, delay in script:
        if delay:
            await asyncio.sleep(delay)
        if invitation.state not in ("incoming", "early"):
            return
        invitation.send_response(code, sdp=session(sdp) if with_sdp else None)


def answer_proposals(
    code: int = 200, sdp: str | None = None, directions: dict[str, str] | None = None
) -> None:
    """Answer every re-INVITE: ``code``, with ``sdp`` (default: our active description
    with each offered direction answered as ``directions`` maps it, the new m-lines
    accepted with the offered port + 2)."""

    def proposal(notification: Any) -> None:
        data = notification.data
        if data.state != "connected" or data.sub_state not in (
            "received_proposal",
            "received_proposal_request",
        ):
            return
        invitation = notification.sender
        if code >= 300:
            invitation.send_response(code)
            return
        invitation.send_response(code, sdp=_answer(invitation, sdp, directions or {}))

    _observe(proposal, "SIPInvitationChangedState")


def _answer(invitation: Invitation, sdp: str | None, directions: dict[str, str]) -> SDPSession:
    if sdp is not None:
        return SDPSession.parse(sdp)
    active = SDPSession.new(invitation.sdp.active_local)  # type: ignore[arg-type]
    offered = invitation.sdp.proposed_remote
    if offered is None:
        return active
    flip = {"sendonly": "recvonly", "recvonly": "sendonly"}
    for index, media in enumerate(offered.media):
        if index >= len(active.media):
            line = SDPMediaStream.new(media)
            line.port = media.port + 2 if media.port else 0
            active.media.append(line)
            continue
        line = active.media[index]
        line.port = line.port if media.port else 0
        direction = directions.get(media.direction, flip.get(media.direction, media.direction))
        line.attributes = [a for a in line.attributes if a.name not in _DIRECTIONS]
        line.attributes.append(SDPAttribute(direction, ""))
    return active


_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


def _observe(observer: Any, name: str) -> None:
    _observers.append(observer)
    NotificationCenter().add_observer(observer, name)


def invoke(name: str, method: str, *args: Any, sdp: str | None = None, **kwargs: Any) -> Any:
    """Call a method of the Invitation ``name`` (``sdp`` as text)."""
    if sdp is not None:
        kwargs["sdp"] = session(sdp)
    return getattr(_invitations[name], method)(*args, **kwargs)


def info(name: str) -> dict[str, Any]:
    """What a test checks of an Invitation, as plain values."""
    invitation = _invitations[name]
    sdp = invitation.sdp
    return {
        "state": invitation.state,
        "sub_state": invitation.sub_state,
        "direction": invitation.direction,
        "call_id": invitation.call_id,
        "dialog_id": tuple(invitation.dialog_id) if invitation.dialog_id else None,
        "remote_user_agent": invitation.remote_user_agent,
        "transport": invitation.transport,
        "active_local": str(sdp.active_local) if sdp.active_local else None,
        "active_remote": str(sdp.active_remote) if sdp.active_remote else None,
        "local_identity": str(invitation.local_identity),
        "remote_identity": str(invitation.remote_identity),
    }


def names() -> list[str]:
    return sorted(_invitations)
