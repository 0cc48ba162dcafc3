"""The README's example must run as written."""

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_tour_runs():
    (example,) = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    result = subprocess.run(
        [sys.executable, "-c", example], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert names[:2] == ["SIPApplicationWillStart", "SIPApplicationDidStart"]
    assert names[-2:] == ["SIPApplicationWillEnd", "SIPApplicationDidEnd"]
    assert "instance" in names
