"""`sipsimple`: command-line front end of the SDK.

Commands: ``demo`` and ``demo-peer`` (:mod:`sipsimple.cli.demo`), ``call`` and ``listen``
(:mod:`sipsimple.cli.call`), ``settings`` (:mod:`sipsimple.cli.settings`). Each
command's module is imported only when needed: ``sipsimple settings`` does not load the
media stack (numpy, PyAV) or the streams.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sipsimple import __version__

__all__ = ["build_parser", "main"]


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or just the command ``only`` (and the modules it needs)."""
    parser = argparse.ArgumentParser(prog="sipsimple", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"sipsimple {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    if only in (None, "demo", "demo-peer"):
        from sipsimple.cli.demo import add_demo_parsers

        add_demo_parsers(commands)
    if only in (None, "call", "listen"):
        from sipsimple.cli.call import add_call_parsers

        add_call_parsers(commands)
    if only in (None, "settings"):
        from sipsimple.cli.settings import add_settings_parser

        add_settings_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    command = arguments[0] if arguments else None
    known = ("demo", "demo-peer", "call", "listen", "settings")
    try:
        args = build_parser(command if command in known else None).parse_args(arguments)
        return args.handler(args)  # type: ignore[no-any-return]
    except KeyboardInterrupt:  # before a command could take over Ctrl-C
        return 130


if __name__ == "__main__":
    sys.exit(main())
