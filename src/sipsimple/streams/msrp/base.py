"""MSRPStreamBase: what every stream carried by MSRP shares (spec: MSRPStreamBase).

The SDP of an MSRP stream (RFC 4975 section 8, RFC 6135 a=setup), choosing who opens
the connection, reaching the peer directly, through a listener of our own or through
an RFC 4976 relay, and reading the session's events. The protocol itself is the
sans-IO :mod:`sipsimple.msrp` layer under :mod:`sipsimple.msrp.transport`.

Who connects
    Outgoing (we offer): with the "relay" connection model we offer ``active`` and
    connect to the answer's path, or, with ``use_msrp_relay_for_outbound``, offer
    ``actpass`` with our relay's path. Otherwise (the "acm" model, the Bonjour account)
    we listen and offer ``actpass``; an answer of ``passive`` makes us connect instead.
    Incoming (we answer): we answer ``active`` and connect whenever the offer lets us;
    when it does not (``active`` or no a=setup), we answer ``passive`` with our relay's
    path ("relay" model) or a listener of our own.

    The relay is ``nat_traversal.msrp_relay`` (a host without port: DNS SRV
    ``_msrps._tcp``), else found with DNS SRV ``_msrps._tcp.<account domain>``; it is
    reached over TLS and authenticated with AUTH and the account's credentials.
    Listening over TLS needs ``SIPSimpleSettings.tls.certificate``.

Hooks for subclasses
    ``_handle_SEND(event)`` gets the events about incoming SEND requests
    (MessageReceived when ``use_msrp_session`` is true: the session layer reassembles
    whole messages; MessageDataReceived as the chunks arrive when it is false;
    MessageAborted), ``_handle_REPORT(event)`` the ReportReceived events, and
    ``_handle_delivery(event)`` the events about our own messages (MessageSent,
    ResponseReceived, MessageDeliveryFailed, TransactionTimedOut). A hook may return an
    awaitable: no further event is read until it is done (back-pressure for slow work
    such as disk writes). The stream observes its own notifications, so a subclass may
    define ``_NH_<NotificationName>(notification)`` methods.

Notifications beyond the IMediaStream ones
    MSRPTransportTrace (when ``SIPSimpleSettings.logs.trace_msrp`` is set): every byte
    read or written, with ``timestamp``, ``direction``, ``data`` (text),
    ``local_address``, ``remote_address``; its sender is the stream's MSRPTransport, or
    the stream itself before the transport exists (relay AUTH). MSRPLibraryLog
    (anonymous): ``timestamp``, ``message``, ``level`` (a :mod:`logging` level) for
    malformed MSRP from the peer and relay events. MediaStreamDidFail carries
    ``reason`` and ``context`` ("initialize", "start" or "reading"); MediaStreamDidEnd
    carries ``error`` (the failure reason or None).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Coroutine
from datetime import UTC, datetime
from typing import Any, ClassVar

from sipsimple.configuration.settings import SIPSimpleSettings
from sipsimple.core import SDPAttribute, SDPConnection, SDPMediaStream
from sipsimple.core.sdp import DIRECTIONS
from sipsimple.core.sip.auth import digest_response
from sipsimple.core.sip.uri import SIPURI
from sipsimple.core.transport.settings import TransportSettings
from sipsimple.core.transport.tls import client_context, server_context
from sipsimple.lookup import DNSLookup
from sipsimple.msrp import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_PORT,
    MSRPURI,
    MessageAborted,
    MessageDataReceived,
    MessageReceived,
    MSRPError,
    ProtocolError,
    RelayAuthenticated,
    RelayAuthenticationFailed,
    ReportReceived,
    make_id,
)
from sipsimple.msrp.protocol import format_auth_params
from sipsimple.msrp.transport import (
    MSRPAcceptor,
    MSRPListener,
    MSRPRelayConnection,
    MSRPRelayError,
    MSRPTransport,
    TraceHook,
    TransportClosed,
    answer_setup,
    connect,
    connect_relay,
    connects,
)
from sipsimple.notification import Notification, NotificationCenter, NotificationData
from sipsimple.streams import IMediaStream, MediaStreamRegistrar

__all__ = ["MSRPStreamBase", "MSRPStreamError", "msrp_transport_of", "post_library_log"]

log = logging.getLogger(__name__)

_SDP_TRANSPORTS = {"TCP/MSRP": False, "TCP/TLS/MSRP": True}


class MSRPStreamError(Exception):
    """An MSRP stream cannot do what was asked (wrong state, unusable SDP, settings)."""


def _now() -> datetime:
    return datetime.now(UTC)


def post_library_log(message: str, level: int = logging.INFO) -> None:
    """MSRPLibraryLog, sent anonymously (spec: MSRPLibraryLog)."""
    log.log(level, "%s", message)
    NotificationCenter().post_notification(
        "MSRPLibraryLog",
        sender=None,
        data=NotificationData(timestamp=_now(), message=message, level=level),
    )


def msrp_transport_of(media: Any) -> bool | None:
    """Whether an m-line is MSRP over TLS (True), over TCP (False), or not MSRP (None)."""
    return _SDP_TRANSPORTS.get(str(media.transport).upper())


def _account_transport_matches(account: Any, media: Any) -> bool:
    use_tls = msrp_transport_of(media)
    return use_tls is not None and use_tls == (str(account.msrp.transport) == "tls")


def _tls_settings() -> TransportSettings:
    tls = SIPSimpleSettings().tls
    certificate = tls.certificate.normalized if tls.certificate is not None else None
    return TransportSettings(
        tls_verify_server=tls.verify_server,
        tls_ca_file=tls.ca_list.normalized if tls.ca_list is not None else None,
        tls_cert_file=certificate,
        tls_privkey_file=certificate,
    )


class MSRPStreamBase(IMediaStream, metaclass=MediaStreamRegistrar):
    """The base of the MSRP streams (spec: MSRPStreamBase); see the module docstring.

    Subclasses set ``type``, ``priority``, ``media_type``, ``accept_types``,
    ``accept_wrapped_types`` and ``use_msrp_session``, and implement ``new_from_sdp``
    (calling ``_take_offer`` on the stream they return). ``chunk_size`` and
    ``max_message_size`` go to the MSRP session; the timeouts (seconds) bound
    connecting, waiting for the peer's connection and closing.

    ``state`` goes None -> "initializing" -> "initialized" -> "starting" -> "started",
    and "ending" -> "ended" once end() is called; ``failure`` is the reason of a
    MediaStreamDidFail. ``msrp`` is the MSRPTransport once started.
    """

    media_type: ClassVar[str] = "message"
    accept_types: ClassVar[list[str]] = ["*"]
    accept_wrapped_types: ClassVar[list[str] | None] = None
    use_msrp_session: ClassVar[bool] = True
    chunk_size: ClassVar[int] = DEFAULT_CHUNK_SIZE
    max_message_size: ClassVar[int | None] = 16 * 1024 * 1024
    connect_timeout: ClassVar[float] = 10.0
    accept_timeout: ClassVar[float] = 25.0
    close_timeout: ClassVar[float] = 2.0

    hold_supported = False
    on_hold_by_local = False
    on_hold_by_remote = False

    def __init__(self, account: Any, direction: str = "sendrecv") -> None:
        if account is None or not all(
            hasattr(account, name) for name in ("msrp", "nat_traversal", "uri", "credentials")
        ):
            raise TypeError(f"account must be an Account or a BonjourAccount, not {account!r}")
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}")
        self.account = account
        self.direction = direction
        self.session: Any = None
        self.state: str | None = None
        self.failure: str | None = None
        self.msrp: MSRPTransport | None = None
        self.local_uri: MSRPURI | None = None
        self.local_path: list[MSRPURI] = []
        self.local_role: str | None = None
        self.remote_role: str | None = None
        self.remote_media: Any = None
        self.remote_path: list[MSRPURI] = []
        self.remote_accept_types: list[str] = []
        self.remote_accept_wrapped_types: list[str] | None = None
        self.use_tls = str(account.msrp.transport) == "tls"
        self._deactivated = False
        self._listener: MSRPListener | None = None
        self._acceptor: MSRPAcceptor | None = None
        self._relay: MSRPRelayConnection | None = None
        self._trace: TraceHook | None = None
        self._work: set[asyncio.Task[Any]] = set()
        self._reader: asyncio.Task[None] | None = None
        self._nonce_counts: dict[str, int] = {}

    def __repr__(self) -> str:
        uri = f" {self.local_uri}" if self.local_uri is not None else ""
        return f"<{type(self).__name__} {self.state or 'new'}{uri}>"

    def __reduce__(self) -> Any:
        raise TypeError(f"{type(self).__name__} holds live connections and cannot be pickled")

    # -- IMediaStream -------------------------------------------------------------------

    def get_local_media(self, for_offer: bool) -> SDPMediaStream:
        if self.local_uri is None:
            raise MSRPStreamError("get_local_media() needs an initialized stream")
        uri = self.local_path[-1]
        attributes = [SDPAttribute("path", " ".join(str(item) for item in self.local_path))]
        if self.direction != "sendrecv":
            attributes.append(SDPAttribute(self.direction))
        attributes.append(SDPAttribute("accept-types", " ".join(self.accept_types)))
        if self.accept_wrapped_types is not None:
            attributes.append(
                SDPAttribute("accept-wrapped-types", " ".join(self.accept_wrapped_types))
            )
        attributes.append(SDPAttribute("setup", self.local_role or "active"))
        if self.max_message_size is not None and self.use_msrp_session:
            attributes.append(SDPAttribute("max-size", str(self.max_message_size)))
        attributes.extend(self._media_attributes(for_offer))
        host = uri.host
        return SDPMediaStream(
            self.media_type,
            uri.effective_port,
            "TCP/TLS/MSRP" if self.use_tls else "TCP/MSRP",
            formats=["*"],
            connection=SDPConnection(host, address_type="IP6" if ":" in host else "IP4"),
            attributes=attributes,
        )

    def initialize(self, session: Any, direction: str) -> None:
        if direction not in ("incoming", "outgoing"):
            raise ValueError(f"direction must be 'incoming' or 'outgoing', not {direction!r}")
        if self.state is not None:
            raise MSRPStreamError(f"initialize() called on a stream in state {self.state}")
        if direction == "incoming" and self.remote_media is None:
            raise MSRPStreamError("an incoming stream comes from new_from_sdp()")
        self.session = session
        self.state = "initializing"
        NotificationCenter().add_observer(self, sender=self)
        self._spawn(self._initialize(direction == "outgoing"))

    def start(self, local_sdp: Any, remote_sdp: Any, stream_index: int) -> None:
        if self.state != "initialized":
            raise MSRPStreamError(f"start() called on a stream in state {self.state}")
        self.state = "starting"
        self._spawn(self._start(remote_sdp.media[stream_index]))

    def validate_update(self, remote_sdp: Any, stream_index: int) -> bool:
        """A renegotiation may repeat the stream, not move it: same path, same transport."""
        media = remote_sdp.media[stream_index]
        path = media.attributes.getfirst("path")
        try:
            remote_path = [MSRPURI.parse(item) for item in (path or "").split()]
        except MSRPError:
            return False
        return remote_path == self.remote_path and msrp_transport_of(media) == self.use_tls

    def update(self, local_sdp: Any, remote_sdp: Any, stream_index: int) -> None:
        self._read_accept_types(remote_sdp.media[stream_index])

    def hold(self) -> None:
        """MSRP streams have no hold (hold_supported is False)."""

    def unhold(self) -> None:
        """MSRP streams have no hold (hold_supported is False)."""

    def deactivate(self) -> None:
        self._deactivated = True

    def end(self) -> None:
        if self.state in ("ending", "ended"):
            return
        previous, self.state = self.state, "ending"
        self._post("MediaStreamWillEnd")
        if previous is None:
            self._ended()
            return
        self._spawn(self._end(), keep_on_end=True)

    # -- notifications ------------------------------------------------------------------

    def handle_notification(self, notification: Notification) -> None:
        handler = getattr(self, f"_NH_{notification.name}", None)
        if handler is not None:
            handler(notification)

    def _post(self, name: str, **data: Any) -> None:
        NotificationCenter().post_notification(
            name, sender=self, data=NotificationData(timestamp=_now(), **data)
        )

    # -- hooks for subclasses -----------------------------------------------------------

    def _media_attributes(self, for_offer: bool) -> list[SDPAttribute]:
        """Attributes of this kind of stream beyond the common ones."""
        return []

    async def _prepare(self, outgoing: bool) -> None:
        """Work to do while initializing (files, hashes); raise to fail."""

    def _check_remote_media(self, media: Any) -> None:
        """Called by start() with the peer's m-line; raise MSRPStreamError to refuse it."""

    def _handle_delivery(self, event: Any) -> Awaitable[None] | None:
        """Events about our own messages."""
        return None

    def _connection_ended(self, error: str | None) -> Awaitable[None] | None:
        """The transport closed: ``error`` is None for an orderly end."""
        return None

    async def _cleanup(self) -> None:
        """Release what the subclass holds; called once by end()."""

    # -- offers -------------------------------------------------------------------------

    def _take_offer(self, media: Any) -> None:
        """Remember the peer's offer (new_from_sdp): its a=setup decides who connects."""
        self.remote_media = media
        self.remote_role = media.attributes.getfirst("setup")

    @staticmethod
    def _acceptable_offer(account: Any, media: Any, media_type: str) -> bool:
        return (
            media.media == media_type
            and media.port != 0
            and _account_transport_matches(account, media)
            and media.attributes.getfirst("path") is not None
        )

    # -- initialize ---------------------------------------------------------------------

    async def _initialize(self, outgoing: bool) -> None:
        try:
            self._trace = self._trace_hook()
            await self._prepare(outgoing)
            role, how = self._connection_plan(outgoing)
            if how == "relay":
                await self._open_relay()
            elif how == "listen":
                await self._listen()
            else:
                self.local_uri = self._own_uri()
                self.local_path = [self.local_uri]
            self.local_role = role
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.info("%r failed to initialize: %s", self, error, exc_info=True)
            self._fail(str(error) or type(error).__name__, "initialize")
            return
        self.state = "initialized"
        self._post("MediaStreamDidInitialize")

    def _connection_plan(self, outgoing: bool) -> tuple[str, str]:
        """(our a=setup, how we get the connection: "connect", "listen" or "relay")."""
        model = str(getattr(self.account.msrp, "connection_model", "acm"))
        if outgoing:
            if model == "relay" and self.account.nat_traversal.use_msrp_relay_for_outbound:
                return "actpass", "relay"
            if model == "relay" or not self._can_listen():
                return "active", "connect"
            return "actpass", "listen"
        try:
            answer = answer_setup(self.remote_role, prefer="active")
        except ValueError as error:
            raise MSRPStreamError(f"unusable offer: {error}") from None
        if answer == "active":
            return "active", "connect"
        if model == "relay":
            return "passive", "relay"
        if not self._can_listen():
            raise MSRPStreamError(
                "the peer wants to connect, but accepting MSRP over TLS needs a certificate"
                " (SIPSimpleSettings.tls.certificate)"
            )
        return "passive", "listen"

    def _can_listen(self) -> bool:
        return not self.use_tls or SIPSimpleSettings().tls.certificate is not None

    @staticmethod
    def _local_host() -> str:
        return str(SIPSimpleSettings().local_ip)

    def _own_uri(self) -> MSRPURI:
        """Our URI when we do not listen: it names the session, nobody connects to it."""
        return MSRPURI(
            host=self._local_host(),
            port=DEFAULT_PORT,
            session_id=make_id(20),
            use_tls=self.use_tls,
        )

    async def _listen(self) -> None:
        context = server_context(_tls_settings()) if self.use_tls else None
        self._listener = await MSRPListener.start(
            self._local_host(),
            0,
            ssl=context,
            bind_timeout=self.accept_timeout,
            trace=self._trace,
        )
        self.local_uri = self._listener.new_uri()
        self.local_path = [self.local_uri]
        self._acceptor = self._listener.expect(self.local_uri)

    async def _open_relay(self) -> None:
        if not self.use_tls:
            raise MSRPStreamError("MSRP relays are reached over TLS: set msrp.transport to tls")
        relay_uri, targets = await self._relay_targets()
        self.local_uri = MSRPURI(
            host=self._local_host(), port=DEFAULT_PORT, session_id=make_id(20), use_tls=True
        )
        context = client_context(_tls_settings())
        errors = []
        for host, port in targets:
            try:
                self._relay = await connect_relay(
                    relay_uri,
                    self.local_uri,
                    self._authorize,
                    ssl=context,
                    server_hostname=relay_uri.host,
                    host=host,
                    port=port,
                    timeout=self.connect_timeout,
                    trace=self._trace,
                )
            except MSRPRelayError as error:
                raise MSRPStreamError(f"MSRP relay {relay_uri}: {error}") from None
            except MSRPError as error:
                errors.append(str(error))
                continue
            post_library_log(f"authenticated to MSRP relay {relay_uri} at {host}:{port}")
            self.local_path = self._relay.path
            return
        raise MSRPStreamError(f"cannot reach MSRP relay {relay_uri}: {'; '.join(errors)}")

    async def _relay_targets(self) -> tuple[MSRPURI, list[tuple[str, int]]]:
        relay = self.account.nat_traversal.msrp_relay
        if relay is not None:
            if relay.transport is not None and str(relay.transport) != "tls":
                raise MSRPStreamError(f"MSRP relays are reached over TLS, not {relay.transport}")
            host = str(relay.host)
            if relay.port is not None:
                return MSRPURI(host, int(relay.port), use_tls=True), [(host, int(relay.port))]
            uri = SIPURI(host=host)
        else:
            uri = self.account.uri
            host = str(uri.host)
        targets = await DNSLookup().lookup_service(uri, "msrprelay")
        if not targets:
            raise MSRPStreamError(f"no MSRP relay found for {host}")
        return MSRPURI(host, targets[0][1], use_tls=True), [(a, int(p)) for a, p in targets]

    def _authorize(self, challenge: dict[str, str], method: str, uri: str) -> str:
        """The Authorization of an AUTH answering a relay's digest challenge."""
        credentials = self.account.credentials
        realm = challenge.get("realm", "")
        nonce = challenge.get("nonce", "")
        algorithm = challenge.get("algorithm", "MD5")
        offered = [item.strip() for item in challenge.get("qop", "").split(",") if item.strip()]
        qop = "auth" if "auth" in offered else None
        count = self._nonce_counts.get(nonce, 0) + 1
        self._nonce_counts = {nonce: count}
        cnonce = secrets.token_hex(8)
        response = digest_response(
            algorithm=algorithm,
            username=credentials.username,
            realm=realm,
            password=credentials.password,
            method=method,
            uri=uri,
            nonce=nonce,
            qop=qop,
            nonce_count=count,
            cnonce=cnonce if qop else None,
        )
        fields = {
            "username": credentials.username,
            "realm": realm,
            "nonce": nonce,
            "uri": uri,
            "response": response,
            "algorithm": algorithm,
        }
        if "opaque" in challenge:
            fields["opaque"] = challenge["opaque"]
        if qop:
            fields.update(qop=qop, nc=f"{count:08x}", cnonce=cnonce)
        return format_auth_params("Digest", fields)

    def _trace_hook(self) -> TraceHook | None:
        if not SIPSimpleSettings().logs.trace_msrp:
            return None

        def trace(direction: str, local: Any, remote: Any, data: bytes) -> None:
            NotificationCenter().post_notification(
                "MSRPTransportTrace",
                sender=self.msrp if self.msrp is not None else self,
                data=NotificationData(
                    timestamp=_now(),
                    direction=direction,
                    data=data.decode("utf-8", "replace"),
                    local_address=local,
                    remote_address=remote,
                ),
            )

        return trace

    # -- start --------------------------------------------------------------------------

    async def _start(self, media: Any) -> None:
        try:
            self._read_remote_media(media)
            self._check_remote_media(media)
            transport = await self._open_transport()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.info("%r failed to start: %s", self, error, exc_info=True)
            self._fail(str(error) or type(error).__name__, "start")
            return
        self.msrp = transport
        self.state = "started"
        self._post("MediaStreamDidStart")
        if self.state == "started":
            self._reader = self._spawn(self._read(transport))

    def _read_remote_media(self, media: Any) -> None:
        use_tls = msrp_transport_of(media)
        if use_tls is None:
            raise MSRPStreamError(f"the peer's m-line is not MSRP: {media.transport}")
        path = media.attributes.getfirst("path")
        if not path:
            raise MSRPStreamError("the peer's m-line has no a=path")
        try:
            remote_path = [MSRPURI.parse(item) for item in path.split()]
        except MSRPError as error:
            raise MSRPStreamError(f"the peer's a=path is invalid: {error}") from None
        if remote_path[0].use_tls != self.use_tls or use_tls != self.use_tls:
            ours = "TLS" if self.use_tls else "TCP"
            raise MSRPStreamError(f"the peer's MSRP transport differs from ours ({ours})")
        self.remote_path = remote_path
        self.remote_role = media.attributes.getfirst("setup")
        self._read_accept_types(media)

    def _read_accept_types(self, media: Any) -> None:
        self.remote_media = media
        self.remote_accept_types = media.attributes.getfirst("accept-types", "").split()
        wrapped = media.attributes.getfirst("accept-wrapped-types")
        self.remote_accept_wrapped_types = wrapped.split() if wrapped is not None else None

    def _connects(self) -> bool:
        """Whether we open the connection, now that both a=setup values are known."""
        if self.local_role == "actpass":
            try:
                return connects("actpass", self.remote_role, offerer=True)
            except ValueError as error:
                raise MSRPStreamError(f"unusable answer: {error}") from None
        return self.local_role == "active"

    def _session_options(self) -> dict[str, Any]:
        return {
            "chunk_size": self.chunk_size,
            "reassemble": self.use_msrp_session,
            "accept_types": self.accept_types,
            "max_message_size": self.max_message_size if self.use_msrp_session else None,
        }

    async def _open_transport(self) -> MSRPTransport:
        options = self._session_options()
        active = self._connects()
        if self._relay is not None:
            return self._relay.start_session(self.remote_path, active=active, **options)
        if active:
            await self._stop_listening()
            context = client_context(_tls_settings()) if self.use_tls else None
            assert self.local_uri is not None
            return await connect(
                self.local_uri,
                self.remote_path,
                ssl=context,
                timeout=self.connect_timeout,
                trace=self._trace,
                **options,
            )
        if self._acceptor is None:
            raise MSRPStreamError("neither endpoint would open the MSRP connection")
        try:
            return await self._acceptor.accept(
                self.remote_path, timeout=self.accept_timeout, **options
            )
        finally:
            await self._stop_listening()

    async def _stop_listening(self) -> None:
        acceptor, listener = self._acceptor, self._listener
        self._acceptor = self._listener = None
        if acceptor is not None:
            acceptor.cancel()
        if listener is not None:
            await listener.close()

    # -- reading ------------------------------------------------------------------------

    async def _read(self, transport: MSRPTransport) -> None:
        async for event in transport:
            if isinstance(event, TransportClosed):
                await self._closed(event)
                return
            try:
                result = self._dispatch(event)
                if result is not None:
                    await result
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%r failed to handle %r", self, event)

    def _dispatch(self, event: Any) -> Awaitable[None] | None:
        kind = type(event)
        if kind is MessageReceived or kind is MessageDataReceived or kind is MessageAborted:
            handler = getattr(self, "_handle_SEND", None)
            return handler(event) if handler is not None else None
        if kind is ReportReceived:
            handler = getattr(self, "_handle_REPORT", None)
            return handler(event) if handler is not None else None
        if kind is ProtocolError:
            peer = self.msrp.remote_address if self.msrp is not None else None
            post_library_log(f"malformed MSRP from {peer}: {event.error}", logging.WARNING)
            return None
        if kind is RelayAuthenticated:
            post_library_log(f"MSRP relay authentication refreshed ({event.expires} s)")
            return None
        if kind is RelayAuthenticationFailed:
            reason = f"MSRP relay authentication failed: {event.code} {event.comment or ''}"
            post_library_log(reason.rstrip(), logging.ERROR)
            return None
        return self._handle_delivery(event)

    async def _closed(self, event: TransportClosed) -> None:
        orderly = event.error is None or self._deactivated or self.state in ("ending", "ended")
        reason = None if orderly else str(event.error)
        result = self._connection_ended(reason)
        if result is not None:
            await result
        if reason is not None:
            self._fail(f"MSRP connection failed: {reason}", "reading")

    # -- failing and ending -------------------------------------------------------------

    def _fail(self, reason: str, context: str) -> None:
        if self.failure is not None or self.state in ("ending", "ended"):
            return
        self.failure = reason
        self._post("MediaStreamDidFail", reason=reason, context=context)

    async def _end(self) -> None:
        current = asyncio.current_task()
        for task in list(self._work):
            if task is not current and task is not self._reader:
                task.cancel()
        others = [task for task in self._work if task is not current and task is not self._reader]
        if others:
            await asyncio.gather(*others, return_exceptions=True)
        try:
            if self.msrp is not None:
                await self.msrp.close(timeout=self.close_timeout)
            if self._reader is not None:
                done, _ = await asyncio.wait([self._reader], timeout=self.close_timeout)
                if not done:
                    self._reader.cancel()
                    await asyncio.gather(self._reader, return_exceptions=True)
            await self._stop_listening()
            if self._relay is not None and self.msrp is None:
                await self._relay.close()
            await self._cleanup()
        except Exception:
            log.exception("%r did not end cleanly", self)
        finally:
            self._ended()

    def _ended(self) -> None:
        self.state = "ended"
        self._post("MediaStreamDidEnd", error=self.failure)
        NotificationCenter().discard_observer(self, sender=self)

    # -- tasks --------------------------------------------------------------------------

    def _spawn(
        self, coroutine: Coroutine[Any, Any, Any], *, keep_on_end: bool = False
    ) -> asyncio.Task[Any]:
        """A task of this stream: end() cancels it unless ``keep_on_end``."""
        task = asyncio.get_running_loop().create_task(coroutine)
        if not keep_on_end:
            self._work.add(task)
            task.add_done_callback(self._work.discard)
        task.add_done_callback(_log_failure)
        return task


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("MSRP stream task failed", exc_info=error)
