"""``cementscan phantom`` (placeholder until the synth package lands; helper-1 replaces this file)."""

from __future__ import annotations

import argparse

from cementscan.errors import InputError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("phantom", help="synthetic torso CT with known cement")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    raise InputError("phantom is not available yet")
