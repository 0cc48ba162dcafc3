import re
import subprocess
import sys

SESSION_TIMELINE = {
    "alice": [
        "SIPSessionNewOutgoing",
        "SIPSessionGotRingIndication",
        "SIPSessionGotProvisionalResponse",
        "SIPSessionWillStart",
        "SIPSessionDidStart",
        "SIPSessionWillEnd",
        "SIPSessionDidEnd",
    ],
    "bob": [
        "SIPSessionNewIncoming",
        "SIPSessionWillStart",
        "SIPSessionDidStart",
        "SIPSessionWillEnd",
        "SIPSessionDidEnd",
    ],
}


def test_demo_makes_a_session_between_two_endpoints_and_prints_its_timeline():
    result = subprocess.run(
        [sys.executable, "-m", "sipsimple.cli.main", "demo", "--timeout", "20", "--duration", "2"],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    rows = [line.split() for line in lines if line.strip().split(" ")[0].endswith("s")]
    for party, expected in SESSION_TIMELINE.items():
        names = [row[2] for row in rows if row[1] == party]
        application = [name for name in names if name.startswith("SIPApplication")]
        assert application == [
            "SIPApplicationWillStart",
            "SIPApplicationDidStart",
            "SIPApplicationWillEnd",
            "SIPApplicationDidEnd",
        ], party
        assert [name for name in names if name in expected] == expected, party
    ended = [line for line in lines if "SIPSessionDidEnd" in line]
    assert any("alice" in line and "originator='local'" in line for line in ended)
    assert any("bob" in line and "originator='remote'" in line for line in ended)
    assert any("bob " in line and "received ['hello from alice']" in line for line in lines)
    assert any("alice" in line and "received ['hello from bob']" in line for line in lines)
    assert any("instance id urn:uuid:" in line for line in lines)
    got = [line for line in lines if "ChatStreamGotMessage" in line]
    assert any(" bob " in line and "body='Hello Bob! A file is on its way" in line for line in got)
    assert any(" alice " in line and "body='Hi Alice, got it, thanks!'" in line for line in got)
    finished = [line for line in lines if "FileTransferStreamDidFinish" in line]
    assert len(finished) == 2 and all("error=False" in line for line in finished)
    assert any(" bob " in line and "received/a note from alice.txt'" in line for line in finished)
    delivered = [line for line in lines if "FileTransferStreamDidDeliverChunk" in line]
    assert delivered and all(" alice " in line for line in delivered)
    assert lines[-1] == "demo finished"
    # The call: audio both ways (each side heard the other's tone), its media and RTCP.
    output = result.stdout
    assert re.search(r"bob +AudioStreamGotDTMF +AudioStream +digit='5'", output), output
    for who, tone in (("alice", 1500), ("bob", 1000)):
        heard = re.search(rf"{who} heard (\d+) Hz", output)
        assert heard is not None and abs(int(heard.group(1)) - tone) <= 5, output
    assert len(re.findall(r"codec opus at 48000 Hz, SRTP AE\S+, ICE off", output)) == 2
    assert len(re.findall(r"RTCP: received [1-9]\d* packets, 0 lost", output)) == 2
