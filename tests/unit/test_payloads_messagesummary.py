"""The RFC 3842 message summary document: parsing, building, and bad input."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipsimple.payloads.messagesummary import (
    MESSAGE_CONTEXT_CLASSES,
    MessageCounts,
    MessageSummary,
    MessageSummaryParseError,
)

# The examples of RFC 3842 section 6 (the NOTIFY bodies).
RFC_SIMPLE = b"Messages-Waiting: yes\r\nMessage-Account: sip:alice@vmail.example.com\r\n"
RFC_FULL = (
    b"Messages-Waiting: yes\r\n"
    b"Message-Account: sip:alice@vmail.example.com\r\n"
    b"Voice-Message: 4/8 (1/2)\r\n"
    b"\r\n"
    b"To: <alice@atlanta.example.com>\r\n"
    b"From: <bob@biloxi.example.com>\r\n"
    b"Subject: carpool tomorrow?\r\n"
    b"Priority: normal\r\n"
    b"Message-ID: 13492834@vmail.example.com\r\n"
    b"\r\n"
    b"To: <alice@atlanta.example.com>\r\n"
    b"From: <carol@chicago.example.com>\r\n"
    b"Subject: hello\r\n"
)


def test_status_and_account():
    summary = MessageSummary.parse(RFC_SIMPLE)
    assert summary.messages_waiting is True
    assert summary.message_account == "sip:alice@vmail.example.com"
    assert summary.summaries == {}
    assert summary.optional_headers == []


def test_summary_lines_and_optional_headers():
    summary = MessageSummary.parse(RFC_FULL)
    assert summary.summaries == {"voice-message": MessageCounts(4, 8, 1, 2)}
    assert len(summary.optional_headers) == 2
    first, second = summary.optional_headers
    assert ("Subject", "carpool tomorrow?") in first
    assert ("Message-ID", "13492834@vmail.example.com") in first
    assert second[-1] == ("Subject", "hello")


def test_names_are_case_insensitive_and_urgent_counts_optional():
    summary = MessageSummary.parse(
        "messages-waiting:NO\nFAX-MESSAGE:  0 / 3\nvoice-message: 1/2(0/1)\n"
    )
    assert summary.messages_waiting is False
    assert summary.message_account is None
    assert summary.summaries["fax-message"] == MessageCounts(0, 3, 0, 0)
    assert summary.summaries["voice-message"] == MessageCounts(1, 2, 0, 1)


def test_folded_lines_are_joined():
    summary = MessageSummary.parse(
        b"Messages-Waiting: yes\r\nMessage-Account:\r\n sip:alice@vmail.example.com\r\n"
    )
    assert summary.message_account == "sip:alice@vmail.example.com"


def test_unknown_lines_of_the_summary_block_are_ignored():
    summary = MessageSummary.parse(b"Messages-Waiting: yes\r\nX-Vendor: 1\r\n")
    assert summary.messages_waiting and summary.summaries == {}


@pytest.mark.parametrize(
    "document",
    [
        b"",
        b"\r\n\r\n",
        b"Voice-Message: 1/2\r\n",  # no status line first
        b"Messages-Waiting: maybe\r\n",
        b"Messages-Waiting: yes\r\nMessages-Waiting: no\r\n",
        b"Messages-Waiting: yes\r\nVoice-Message: 1\r\n",
        b"Messages-Waiting: yes\r\nVoice-Message: -1/2\r\n",
        b"Messages-Waiting: yes\r\nVoice-Message: 1/2 (3)\r\n",
        b"Messages-Waiting: yes\r\nVoice-Message: 4294967296/0\r\n",  # 2^32
        b"Messages-Waiting: yes\r\nVoice-Message: 99999999999/0\r\n",
        b"Messages-Waiting: yes\r\nMessage-Account:\r\n",
        b"Messages-Waiting: yes\r\nno colon here\r\n",
        b" folded: first\r\n",
        b"Messages-Waiting: yes\r\n\xff\xfe\r\n",
        b"Messages-Waiting: yes\r\n" + b"X: y\r\n" * 12000,
    ],
)
def test_malformed_documents_raise_the_parse_error(document):
    with pytest.raises(MessageSummaryParseError):
        MessageSummary.parse(document)


def test_parse_wants_text_or_bytes():
    with pytest.raises(TypeError):
        MessageSummary.parse(42)  # type: ignore[arg-type]


def test_counts_are_checked():
    with pytest.raises(ValueError):
        MessageCounts(-1, 0)
    with pytest.raises(ValueError):
        MessageCounts(True, 0)  # type: ignore[arg-type]
    assert str(MessageCounts(3, 4)) == "3/4"
    assert str(MessageCounts(3, 4, 1, 0)) == "3/4 (1/0)"


def test_build_round_trips():
    summary = MessageSummary.parse(RFC_FULL)
    assert MessageSummary.parse(summary.build()) == summary
    assert summary.build().startswith(b"Messages-Waiting: yes\r\nMessage-Account: ")
    assert b"Voice-Message: 4/8 (1/2)\r\n" in summary.build()


counts = st.integers(min_value=0, max_value=2**32 - 1)
summaries = st.builds(
    MessageSummary,
    messages_waiting=st.booleans(),
    message_account=st.none() | st.just("sip:vm@example.com"),
    summaries=st.dictionaries(
        st.sampled_from(MESSAGE_CONTEXT_CLASSES),
        st.builds(MessageCounts, counts, counts, counts, counts),
        max_size=3,
    ),
    optional_headers=st.lists(
        st.lists(
            st.tuples(
                st.sampled_from(["To", "From", "Subject", "Message-ID"]),
                st.text("abc <>@.:", min_size=1, max_size=20).map(str.strip).filter(bool),
            ),
            min_size=1,
            max_size=3,
        ),
        max_size=2,
    ),
)


@settings(max_examples=100)
@given(summaries)
def test_any_summary_round_trips(summary):
    assert MessageSummary.parse(summary.build()) == summary


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_garbage_raises_only_the_parse_error(data):
    try:
        MessageSummary.parse(data)
    except MessageSummaryParseError:
        pass
