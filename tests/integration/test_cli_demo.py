import re
import subprocess
import sys


def test_demo_runs_the_application_and_prints_its_timeline():
    result = subprocess.run(
        [sys.executable, "-m", "sipsimple.cli.main", "demo", "--timeout", "20", "--duration", "2"],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    words = [line.split() for line in lines]
    names = [w[1] for w in words if len(w) > 1 and w[1].startswith("SIPApplication")]
    assert names == [
        "SIPApplicationWillStart",
        "SIPApplicationDidStart",
        "SIPApplicationWillEnd",
        "SIPApplicationDidEnd",
    ]
    assert any("instance id urn:uuid:" in line for line in lines)
    assert lines[-1] == "demo finished"
    # The call: audio both ways (each side heard the other's tone), its media and RTCP.
    output = result.stdout
    assert "bob | got DTMF 5" in output
    for who, tone in (("alice", 1500), ("bob", 1000)):
        heard = re.search(rf"{who} heard (\d+) Hz", output)
        assert heard is not None and abs(int(heard.group(1)) - tone) <= 5, output
    assert len(re.findall(r"codec opus at 48000 Hz; SRTP AE\S+; ICE off", output)) == 2
    assert len(re.findall(r"RTCP: received [1-9]\d* packets, 0 lost", output)) == 2
