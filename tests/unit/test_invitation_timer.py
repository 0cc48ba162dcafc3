"""Session timer rules (RFC 4028), sans-IO."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipsimple.core.errors import SIPParseError
from sipsimple.core.invitation.timer import (
    SessionExpires,
    SessionTimer,
    parse_min_se,
    request_headers,
    timer_of_request,
    timer_of_response,
    too_small,
)
from sipsimple.core.sip.message import SIPHeaders


def headers(**values: str) -> SIPHeaders:
    return SIPHeaders([(name.replace("_", "-"), value) for name, value in values.items()])


@pytest.mark.parametrize(
    ("text", "interval", "refresher"),
    [
        ("1800", 1800, None),
        ("90;refresher=uac", 90, "uac"),
        (" 4000 ; refresher = UAS ;x=y", 4000, "uas"),
        ("600;other", 600, None),
    ],
)
def test_session_expires_parses(text, interval, refresher):
    value = SessionExpires.parse(text)
    assert (value.interval, value.refresher) == (interval, refresher)


@pytest.mark.parametrize("text", ["", "abc", "0", "90;refresher=both", "-5", "99999999999"])
def test_bad_session_expires_is_a_parse_error(text):
    with pytest.raises(SIPParseError):
        SessionExpires.parse(text)


@given(st.integers(1, 2**32 - 1), st.sampled_from([None, "uac", "uas"]))
def test_session_expires_round_trips(interval, refresher):
    value = SessionExpires(interval, refresher)
    assert SessionExpires.parse(str(value)) == value


def test_min_se():
    assert parse_min_se("90") == 90
    assert parse_min_se(" 120;x") == 120
    with pytest.raises(SIPParseError):
        parse_min_se("soon")


def test_refresh_and_expiry_times():
    refresher = SessionTimer(1800, True, 90)
    other = SessionTimer(1800, False, 90)
    assert refresher.refresh_after == 900
    assert refresher.expire_after == 1800
    assert other.expire_after == 1800 - 32  # min(32, 1800/3)
    assert SessionTimer(90, False, 90).expire_after == 60  # min(32, 30)
    assert str(refresher.request_value()) == "1800;refresher=uac"
    assert str(other.request_value()) == "1800;refresher=uas"


def test_request_headers():
    assert request_headers(None, None, 90) == []
    assert request_headers(None, 30, 90) == [("Session-Expires", "90"), ("Min-SE", "90")]
    running = SessionTimer(600, False, 120)
    assert request_headers(running, 1800, 90) == [
        ("Session-Expires", "600;refresher=uas"),
        ("Min-SE", "120"),
    ]


def test_too_small():
    assert too_small(headers(Session_Expires="60"), 90)
    assert not too_small(headers(Session_Expires="90"), 90)
    assert not too_small(headers(), 90)
    with pytest.raises(SIPParseError):
        too_small(headers(Session_Expires="x"), 90)


def test_the_uas_keeps_the_requested_refresher_or_picks_one():
    timer, out = timer_of_request(
        headers(Session_Expires="600;refresher=uas"), True, None, 90, None
    )
    assert timer == SessionTimer(600, True, 90)
    assert out == [("Session-Expires", "600;refresher=uas")]
    # no refresher asked: the requester refreshes when it supports timers (Require: timer)
    timer, out = timer_of_request(headers(Session_Expires="600"), True, None, 90, None)
    assert timer is not None and not timer.local_refresher
    assert out == [("Session-Expires", "600;refresher=uac"), ("Require", "timer")]
    # ... and we do when it does not
    timer, out = timer_of_request(headers(Session_Expires="600"), False, None, 90, None)
    assert timer is not None and timer.local_refresher
    assert ("Require", "timer") not in out


def test_the_uas_may_start_a_timer_the_request_did_not_ask_for():
    timer, out = timer_of_request(headers(Min_SE="300"), True, 200, 90, None)
    assert timer == SessionTimer(300, False, 300)
    assert out[0] == ("Session-Expires", "300;refresher=uac")
    assert timer_of_request(headers(), True, None, 90, None) == (None, [])


def test_a_refresh_without_session_expires_keeps_the_running_timer():
    running = SessionTimer(600, True, 90)
    timer, out = timer_of_request(headers(), True, None, 90, running)
    assert timer == running
    assert out == [("Session-Expires", "600;refresher=uas")]


def test_the_uac_reads_the_2xx():
    asked = SessionTimer(600, True, 90)
    assert timer_of_response(headers(Session_Expires="600;refresher=uas"), asked, None, 90) == (
        SessionTimer(600, False, 90)
    )
    assert timer_of_response(headers(Session_Expires="900;refresher=uac"), asked, None, 90) == (
        SessionTimer(900, True, 90)
    )
    # the UAS does not do timers: we keep ours and refresh
    assert timer_of_response(headers(), asked, None, 90) == asked
    assert timer_of_response(headers(), None, None, 90) is None
