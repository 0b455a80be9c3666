"""The ``finrl-lab`` command line.

Each command group lives in ``finrl_lab.commands.<name>`` and exposes
``add_parser(subparsers)``, which registers its parser with a ``run(args) -> int``
function as the ``handler`` default. Invalid user input raises
:class:`~finrl_lab.errors.FinRLLabError`; this module prints it as one line and
exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from finrl_lab.errors import FinRLLabError

# Command modules, in the order ``finrl-lab --help`` lists them.
COMMAND_MODULES = ("backtest", "pools", "data", "train", "evaluate", "config")
EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """Argument parser whose usage errors follow the project's one-line format."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"error: {message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="finrl-lab",
        description="Reinforcement-learning trading: data, pools, agents, backtests.",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log more (-v info, -vv debug)",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"finrl_lab.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"finrl_lab.commands.{name}":
                continue  # command group not built yet
            raise
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.handler(args) or 0)
    except FinRLLabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
