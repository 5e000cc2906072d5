"""The ``cementscan`` command: parses arguments, dispatches to a command, maps errors to exit codes."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from cementscan import __version__
from cementscan.cli import (
    analyze,
    anatomy,
    batch,
    cohort,
    demo,
    export,
    info,
    insert,
    phantom,
    report,
)
from cementscan.errors import CementscanError, InputError

COMMANDS = (analyze, report, anatomy, info, phantom, insert, demo, batch, cohort, export)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cementscan",
        description="Finds bone cement outside the treated vertebrae on CT after vertebral "
        "augmentation. Decision support for research use, not a diagnosis.",
    )
    parser.add_argument("--version", action="version", version=f"cementscan {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
        return code
    except InputError as exc:
        print(f"cementscan: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("cementscan: interrupted", file=sys.stderr)
        return 130
    except (CementscanError, Exception) as exc:  # an internal error: one line, exit 1
        if os.environ.get("CEMENTSCAN_DEBUG"):
            raise
        print(
            f"cementscan: internal error: {type(exc).__name__}: {exc} "
            "(set CEMENTSCAN_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
