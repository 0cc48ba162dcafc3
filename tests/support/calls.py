"""Minimal INVITE usages written on the Engine's internal API (sipsimple.core.usage).

They are not Invitation: they exist to prove and exercise the usage API (INVITE
dialogs, ACK, BYE, CANCEL, authentication of an INVITE) and to give the calls
benchmark an answering endpoint.

- :class:`CallAnswerer` answers every INVITE: 180 (optional) then 200 with a fixed
  SDP answer, or ``answer_code``; when ``ring_time`` > 0 the 200 waits that long and a
  CANCEL meanwhile gets 487. It ends calls on BYE. Each step is posted as a
  notification from the answerer (TestCallIncoming, TestCallGotAck, TestCallCancelled,
  TestCallDidEnd) with ``call_id``, so a RemoteSDK test sees them.
- :func:`answer_calls` installs one in a RemoteSDK child (``challenge`` makes it ask
  for credentials first: a WWW-Authenticate value), :func:`stop_answering` removes it.
- :class:`OutgoingCall` places one call from the test's own Engine and ends it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sipsimple.core import Engine
from sipsimple.core.sip.auth import Credentials, DigestAuthenticator
from sipsimple.core.sip.dialog import Dialog, DialogSet
from sipsimple.core.sip.message import SIPRequest, SIPResponse
from sipsimple.core.usage import ClientRequest, ServerRequest
from sipsimple.notification import NotificationCenter, NotificationData

__all__ = ["CallAnswerer", "OutgoingCall", "answer_calls", "sdp", "stop_answering"]


def sdp(port: int = 6000) -> bytes:
    return (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    ).encode()


class CallAnswerer:
    """Answers INVITEs; see the module docstring."""

    def __init__(
        self,
        engine: Engine,
        *,
        ring: bool = True,
        ring_time: float = 0.0,
        answer_code: int = 200,
        challenge: str | None = None,
    ) -> None:
        self.engine = engine
        self.challenge = challenge
        self.ring = ring
        self.ring_time = ring_time
        self.answer_code = answer_code
        self.calls: dict[str, Dialog] = {}
        engine.register_request_handler("INVITE", self.handle_invite)
        engine.add_allowed_methods("INVITE", "BYE")

    def remove(self) -> None:
        self.engine.unregister_request_handler("INVITE", self.handle_invite)

    def _post(self, name: str, **fields: Any) -> None:
        NotificationCenter().post_notification(name, self, NotificationData(**fields))

    def handle_invite(self, server: ServerRequest) -> bool:
        request = server.request
        self._post(
            "TestCallIncoming",
            call_id=request.call_id,
            cseq=request.cseq.number,  # type: ignore[union-attr]
            authorization=request.headers.get("Authorization"),
            body=request.body,
        )
        if self.challenge is not None and "Authorization" not in request.headers:
            server.answer(401, headers=[("WWW-Authenticate", self.challenge)])
            return True
        if self.answer_code >= 300:
            server.answer(self.answer_code)
            return True
        if self.ring:
            server.answer(180)
        if self.ring_time > 0:
            server.on_cancel = self._cancelled
            self.engine.loop.call_later(self.ring_time, self._accept, server)
        else:
            self._accept(server)
        return True

    def _cancelled(self, server: ServerRequest, cancel: SIPRequest) -> None:
        server.answer(487)
        self._post("TestCallCancelled", call_id=server.request.call_id)

    def _accept(self, server: ServerRequest) -> None:
        if server.answered:
            return
        request = server.request
        contact = f"<sip:answerer@127.0.0.1:{self.engine.udp_port}>"
        response = server.create_response(
            200,
            headers=[("Contact", contact), ("Content-Type", "application/sdp")],
            body=sdp(),
        )
        dialog = self.engine.dialog_layer.create_uas_dialog(request, response)
        self.calls[request.call_id] = dialog  # type: ignore[index]
        self.engine.register_dialog_usage(dialog.id.call_id, dialog.id.local_tag, self)
        server.send_response(response)

    def handle_request(self, server: ServerRequest) -> bool:
        request = server.request
        dialog = server.dialog
        if dialog is None:
            return False
        if request.method == "ACK":
            self._post("TestCallGotAck", call_id=request.call_id)
        elif request.method == "BYE":
            server.answer(200)
            self.engine.remove_dialog(dialog)
            self.engine.unregister_dialog_usage(dialog.id.call_id, dialog.id.local_tag, self)
            self.calls.pop(request.call_id, None)  # type: ignore[arg-type]
            self._post("TestCallDidEnd", call_id=request.call_id)
        else:
            server.answer(200)
        return True


_answerers: list[CallAnswerer] = []


def answer_calls(**options: Any) -> None:
    """Install a CallAnswerer on the child's Engine (RemoteSDK), instead of any other."""
    stop_answering()
    _answerers.append(CallAnswerer(Engine(), **options))


def stop_answering() -> None:
    while _answerers:
        _answerers.pop().remove()


class OutgoingCall:
    """One call from this Engine to ``uri`` through its usage API.

    ``await call.connect()`` sends the INVITE (authenticating with ``credentials``),
    ACKs the 2xx and returns it (or the final failure response); ``await
    call.hang_up()`` sends BYE and returns its response; ``call.cancel()`` cancels the
    INVITE. ``responses`` lists every response the INVITE got.
    """

    def __init__(self, engine: Engine, uri: str, credentials: Credentials | None = None) -> None:
        self.engine = engine
        self.uri = uri
        self.authenticator = DigestAuthenticator(credentials) if credentials else None
        self.responses: list[SIPResponse] = []
        self.dialog_set: DialogSet | None = None
        self.dialog: Dialog | None = None
        self.client: ClientRequest | None = None
        self._final: asyncio.Future[SIPResponse] | None = None

    async def connect(self) -> SIPResponse:
        engine = self.engine
        self._final = engine.loop.create_future()
        tag = engine.new_tag()
        request = SIPRequest(
            "INVITE",
            self.uri,
            [
                ("From", f"<sip:caller@example.test>;tag={tag}"),
                ("To", f"<{self.uri}>"),
                ("Call-ID", engine.new_call_id()),
                ("CSeq", "1 INVITE"),
                ("Contact", f"<sip:caller@127.0.0.1:{engine.udp_port}>"),
                ("Content-Type", "application/sdp"),
            ],
            sdp(7000),
        )
        self.client = engine.send_request(
            request, self._on_response, authenticator=self.authenticator
        )
        return await asyncio.wait_for(self._final, 10)

    def cancel(self) -> bool:
        assert self.client is not None
        return self.client.cancel()

    def _on_response(self, client: ClientRequest, response: SIPResponse) -> None:
        self.responses.append(response)
        if self.dialog_set is None and response.code > 100:
            # the request as finally sent: after a 401 its CSeq is higher
            self.dialog_set = self.engine.dialog_layer.create_dialog_set(client.request)
        dialog = self.dialog_set.receive_response(response) if self.dialog_set else None
        if 200 <= response.code < 300 and dialog is not None:
            if self.dialog is None:
                self.dialog = dialog
            client.send_ack(dialog.create_ack(client.request.cseq.number))  # type: ignore[union-attr]
        if response.code >= 200 and self._final is not None and not self._final.done():
            self._final.set_result(response)

    async def hang_up(self) -> SIPResponse:
        assert self.dialog is not None
        done: asyncio.Future[SIPResponse] = self.engine.loop.create_future()
        bye = self.dialog.create_request("BYE")

        def on_response(client: ClientRequest, response: SIPResponse) -> None:
            if response.code >= 200 and not done.done():
                done.set_result(response)

        self.engine.send_request(
            bye, on_response, authenticator=self.authenticator, dialog=self.dialog
        )
        response = await asyncio.wait_for(done, 10)
        self.engine.remove_dialog(self.dialog)
        return response
