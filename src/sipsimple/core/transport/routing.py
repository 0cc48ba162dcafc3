"""RFC 3261 section 18 and RFC 3581 rules on the Via header, as plain functions.

- :func:`stamp_sent_by`: the client transport writes its transport and sent-by into
  the top Via of a request (18.1.1) and asks for rport (RFC 3581 section 3).
- :func:`stamp_received`: the server transport records where a request really came
  from: ``received`` when the sent-by host is not the source address, and always with
  ``rport``, whose empty value becomes the source port (18.2.1, RFC 3581 section 4).
- :func:`response_destination`: where a response goes when the connection of its
  request is gone or the transport is UDP (18.2.2, RFC 3581 section 4).
- :func:`sent_by`: the (host, port) of a Via, to check that a response is ours (18.1.2).
- :func:`set_top_via`: put a Via at the top, in place of the one there.
"""

from __future__ import annotations

from sipsimple.core.errors import SIPParseError
from sipsimple.core.sip.headers import FrozenViaHeader
from sipsimple.core.sip.message import SIPMessage
from sipsimple.core.transport.address import (
    DEFAULT_PORTS,
    RELIABLE_TRANSPORTS,
    TRANSPORTS,
    TransportAddress,
    canonical_ip,
)

__all__ = ["response_destination", "sent_by", "set_top_via", "stamp_received", "stamp_sent_by"]


def set_top_via(message: SIPMessage, via: FrozenViaHeader) -> None:
    """Put ``via`` in place of the top Via of ``message``, or add it when there is none."""
    headers = message.headers
    if "Via" not in headers:
        headers.set("Via", via)
        return
    values: list[object] = list(headers.getall("Via"))
    values[0] = via
    headers.set("Via", values)


def _without(parameters: object, *names: str) -> dict[str, str | None]:
    return {
        key: value
        for key, value in dict(parameters).items()  # type: ignore[call-overload]
        if key.lower() not in names
    }


def stamp_sent_by(
    message: SIPMessage, transport: str, host: str, port: int, *, add_rport: bool
) -> None:
    """Set the top Via's transport and sent-by to ours; parameters stay the caller's."""
    via = message.top_via
    if (
        via.transport == transport.upper()
        and via.port == port
        and canonical_ip(via.host) == host
        and (not add_rport or via.rport is not None)
    ):
        return
    parameters = dict(via.parameters)
    if add_rport and via.rport is None:
        parameters["rport"] = None
    set_top_via(message, FrozenViaHeader(transport.upper(), host, port, parameters, via.protocol))


def stamp_received(message: SIPMessage, source_host: str, source_port: int) -> None:
    """Add ``received`` and fill an empty ``rport`` in the top Via of a received request."""
    via = message.top_via
    rport = via.rport
    if rport is not True and canonical_ip(via.host) == source_host:
        return
    parameters = _without(via.parameters, "received", *(("rport",) if rport is True else ()))
    parameters["received"] = source_host
    if rport is True:
        parameters["rport"] = str(source_port)
    set_top_via(
        message, FrozenViaHeader(via.transport, via.host, via.port, parameters, via.protocol)
    )


def sent_by(via: FrozenViaHeader) -> tuple[str, int]:
    """The sent-by of a Via as (canonical host, port), the port defaulted by transport."""
    transport = via.transport.lower()
    port = via.port if via.port is not None else DEFAULT_PORTS.get(transport, 5060)
    return canonical_ip(via.host) or via.host.lower(), port


def response_destination(via: FrozenViaHeader, source: TransportAddress | None) -> TransportAddress:
    """Where RFC 3261 section 18.2.2 sends a response whose top Via is ``via``.

    ``source`` is where the request came from; its ``local`` is kept so that a UDP
    response leaves from the socket the request arrived on (RFC 3581 section 4). Raises
    SIPParseError when the Via gives no usable address (a name without ``received``).
    """
    transport = via.transport.lower()
    if transport not in TRANSPORTS:
        raise SIPParseError(f"cannot send a response over {via.transport}")
    default_port = DEFAULT_PORTS[transport]
    port = via.port if via.port is not None else default_port
    maddr = canonical_ip(via.maddr) if via.maddr else None
    received = via.received
    if maddr is not None:
        host = maddr
    else:
        host = canonical_ip(received) if received else canonical_ip(via.host)
        if host is None:
            raise SIPParseError(f"no address to send a response to in Via {via.body!r}")
        rport = via.rport
        if received and transport not in RELIABLE_TRANSPORTS and rport not in (None, True):
            port = rport
    local = source.local if source is not None else None
    return TransportAddress(transport, host, port, local)
