"""`sipsimple`: command-line front end of the SDK.

``sipsimple demo`` is the README's main job: it runs the SDK on this machine with a
temporary configuration and prints what happened as a timeline of notifications.
Later layers add to the demo (a session between two endpoints, audio, chat and a
file transfer).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections.abc import Sequence

from sipsimple import __version__
from sipsimple.application import SIPApplication
from sipsimple.configuration.settings import SIPSimpleSettings
from sipsimple.notification import Notification, NotificationCenter
from sipsimple.storage import FileStorage

__all__ = ["main"]


class Timeline:
    """Prints every notification with the time since the timeline began."""

    def __init__(self, out=sys.stdout) -> None:
        self.out = out
        self.start = time.monotonic()

    def __call__(self, notification: Notification) -> None:
        fields = {k: v for k, v in vars(notification.data).items() if k != "timestamp"}
        details = " ".join(f"{key}={value!r}" for key, value in fields.items())
        sender = type(notification.sender).__name__
        elapsed = time.monotonic() - self.start
        print(f"{elapsed:8.3f}s  {notification.name:<32} {sender:<20} {details}", file=self.out)


def demo(args: argparse.Namespace) -> int:
    timeline = Timeline()
    center = NotificationCenter()
    center.add_observer(timeline)
    ended = threading.Event()
    center.add_observer(lambda n: ended.set(), name="SIPApplicationDidEnd")
    started = threading.Event()
    center.add_observer(lambda n: started.set(), name="SIPApplicationDidStart")
    app = SIPApplication()
    with tempfile.TemporaryDirectory(prefix="sipsimple-demo-") as directory:
        print(f"sipsimple {__version__} demo: configuration in {directory}")
        app.start(FileStorage(directory))
        if not started.wait(args.timeout):
            print("the application did not start in time", file=sys.stderr)
            app.stop()
            ended.wait(args.timeout)
            return 1
        settings = SIPSimpleSettings()
        print(f"instance id {settings.instance_id}, user agent {settings.user_agent!r}")
        app.stop()
        if not ended.wait(args.timeout):
            print("the application did not stop in time", file=sys.stderr)
            return 1
    print("demo finished")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sipsimple", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"sipsimple {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser(
        "demo", help="run the SDK on this machine and show what happens"
    )
    demo_parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait for each step"
    )
    demo_parser.set_defaults(handler=demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
