import subprocess
import sys


def test_demo_runs_the_application_and_prints_its_timeline():
    result = subprocess.run(
        [sys.executable, "-m", "sipsimple.cli.main", "demo", "--timeout", "20"],
        capture_output=True,
        text=True,
        timeout=60,
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
