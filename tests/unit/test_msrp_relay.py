"""Relay authentication (RFC 4976 AUTH) with a digest computed here, and its use by a session."""

import hashlib

import pytest

from sipsimple.msrp import (
    MSRPURI,
    MSRPData,
    MSRPSession,
    MSRPStateError,
    RelayAuthenticated,
    RelayAuthentication,
    RelayAuthenticationFailed,
)
from sipsimple.msrp.protocol import format_auth_params

RELAY = MSRPURI.parse("msrps://alice@intra.example.com;tcp")
LOCAL = MSRPURI.parse("msrps://alice.example.com:9892/98cjs;tcp")
USE_PATH = "msrps://relay.example.com:9000/hjdhfha;tcp"


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


class Digest:
    """RFC 2617 digest with qop=auth, recording what it was asked."""

    def __init__(self, username="alice", password="secret"):
        self.username, self.password = username, password
        self.calls = []

    def __call__(self, challenge, method, uri):
        self.calls.append((challenge, method, uri))
        nc, cnonce = f"{len(self.calls):08x}", "0a4f113b"
        ha1 = md5(f"{self.username}:{challenge['realm']}:{self.password}")
        ha2 = md5(f"{method}:{uri}")
        response = md5(f"{ha1}:{challenge['nonce']}:{nc}:{cnonce}:auth:{ha2}")
        return format_auth_params(
            "Digest",
            {
                "username": self.username,
                "realm": challenge["realm"],
                "nonce": challenge["nonce"],
                "uri": uri,
                "qop": "auth",
                "nc": nc,
                "cnonce": cnonce,
                "response": response,
            },
        )


def sent(auth) -> MSRPData:
    return MSRPData.parse(auth.data_to_send())


def reply(request: MSRPData, code: int, comment: str, **headers) -> MSRPData:
    response = MSRPData(request.transaction_id, code=code, comment=comment)
    response.set_header("To-Path", request.from_path)
    response.set_header("From-Path", request.to_path)
    for name, value in headers.items():
        response.set_header(name.replace("_", "-"), value)
    return response


def challenge(request, nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", **extra):
    value = f'Digest realm="intra.example.com", qop="auth", nonce="{nonce}"'
    value += "".join(f', {k}="{v}"' for k, v in extra.items())
    return reply(request, 401, "Unauthorized", WWW_Authenticate=value)


def authenticate(auth, now=0.0, expires=1800):
    auth.start(now)
    first = sent(auth)
    assert auth.handle_response(challenge(first), now)
    second = sent(auth)
    assert auth.handle_response(reply(second, 200, "OK", Use_Path=USE_PATH, Expires=expires), now)
    return first, second


def test_auth_with_digest_challenge():
    digest = Digest()
    auth = RelayAuthentication(RELAY, LOCAL, digest)
    first, second = authenticate(auth)
    assert first.method == "AUTH" and first.to_path == [RELAY] and first.from_path == [LOCAL]
    assert "Authorization" not in first.headers
    scheme, params = second.get_header("Authorization")
    assert scheme == "Digest" and params["uri"] == str(RELAY)
    assert digest.calls[0][1:] == ("AUTH", str(RELAY))
    expected = Digest()(
        {"realm": "intra.example.com", "nonce": "dcd98b7102dd2f0e8b11d0f600bfb0c093"},
        "AUTH",
        str(RELAY),
    )
    assert second.headers["Authorization"] == expected
    assert second.transaction_id != first.transaction_id
    event = auth.next_event()
    assert isinstance(event, RelayAuthenticated)
    assert event.use_path == [MSRPURI.parse(USE_PATH)] and event.expires == 1800
    assert auth.authenticated and auth.get_timer() == pytest.approx(1620.0)


def test_refresh_before_expiry():
    auth = RelayAuthentication(RELAY, LOCAL, Digest())
    authenticate(auth)
    auth.next_event()
    auth.handle_timer(1000.0)
    assert auth.data_to_send() == b""
    auth.handle_timer(1620.0)
    refresh = sent(auth)
    assert "Authorization" in refresh.headers  # the last challenge is reused
    auth.handle_response(challenge(refresh, nonce="fresh"), 1620.0)  # a new nonce is answered
    again = sent(auth)
    assert again.get_header("Authorization")[1]["nonce"] == "fresh"


def test_rejected_credentials_fail():
    auth = RelayAuthentication(RELAY, LOCAL, Digest())
    auth.start(0)
    auth.handle_response(challenge(sent(auth)), 0)
    auth.handle_response(challenge(sent(auth)), 0)  # the same nonce again: wrong password
    event = auth.next_event()
    assert isinstance(event, RelayAuthenticationFailed) and event.code == 401
    assert not auth.authenticated and auth.data_to_send() == b""


def test_stale_nonce_is_retried():
    auth = RelayAuthentication(RELAY, LOCAL, Digest())
    auth.start(0)
    auth.handle_response(challenge(sent(auth)), 0)
    auth.handle_response(challenge(sent(auth), stale="true"), 0)
    assert sent(auth).method == "AUTH"
    assert auth.next_event() is None


def test_expires_out_of_bounds():
    auth = RelayAuthentication(RELAY, LOCAL, Digest(), expires=60)
    auth.start(0)
    first = sent(auth)
    assert first.expires == 60
    auth.handle_response(reply(first, 423, "Interval Out Of Bounds", Min_Expires=300), 0)
    assert sent(auth).expires == 300
    auth = RelayAuthentication(RELAY, LOCAL, Digest(), expires=300)
    auth.start(0)
    auth.handle_response(reply(sent(auth), 423, "Out Of Bounds"), 0)
    assert auth.next_event().code == 423


def test_timeout_and_other_errors():
    auth = RelayAuthentication(RELAY, LOCAL, Digest(), transaction_timeout=5.0)
    auth.start(0)
    assert auth.get_timer() == 5.0
    auth.handle_timer(5.0)
    assert auth.next_event().code == 408
    auth = RelayAuthentication(RELAY, LOCAL, Digest())
    auth.start(0)
    request = sent(auth)
    stranger = MSRPData(
        "other1", code=200, headers={"To-Path": str(LOCAL), "From-Path": str(RELAY)}
    )
    assert not auth.handle_response(stranger, 0)
    auth.handle_response(reply(request, 403, "Forbidden"), 0)
    assert auth.next_event() == RelayAuthenticationFailed(403, "Forbidden")
    with pytest.raises(MSRPStateError):
        auth.start(0)


def test_200_without_use_path_fails():
    auth = RelayAuthentication(RELAY, LOCAL, Digest())
    auth.start(0)
    auth.handle_response(reply(sent(auth), 200, "OK"), 0)
    assert auth.next_event().code == 400


def test_session_refreshes_its_relay_authentication():
    auth = RelayAuthentication(RELAY, LOCAL, Digest())
    authenticate(auth)
    auth.next_event()
    bob = MSRPURI.parse("msrps://bob.example.net:8145/foo;tcp")
    session = MSRPSession(LOCAL, [bob], use_path=auth.use_path, relay=auth, active=False)
    assert session.get_timer() == pytest.approx(1620.0)
    session.handle_timer(1620.0)
    data = session.data_to_send(1620.0)
    refresh = MSRPData.parse(data[: data.index(b"$\r\n") + 3])
    assert refresh.method == "AUTH"
    session.receive_data(reply(refresh, 200, "OK", Use_Path=USE_PATH, Expires=600).encode(), 1621.0)
    event = session.next_event()
    assert isinstance(event, RelayAuthenticated) and event.expires == 600
    assert session.get_timer() == pytest.approx(1621.0 + 540.0)
