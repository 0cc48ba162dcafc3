"""Runs every benchmark (benchmarks/bench_*.py) or those whose name contains an argument.

Each benchmark is a script with a main() that prints its figures, and the ratio
against a peer measured in the same run where it has one.  Run it through
scripts/bench.sh, which puts it in a loopback-only network namespace.
"""

import subprocess
import sys
from pathlib import Path


def main() -> int:
    here = Path(__file__).resolve().parent
    wanted = sys.argv[1:]
    failed = 0
    for script in sorted(here.glob("bench_*.py")):
        if wanted and not any(w in script.stem for w in wanted):
            continue
        print(f"== {script.stem}", flush=True)
        failed += subprocess.call([sys.executable, str(script)]) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
