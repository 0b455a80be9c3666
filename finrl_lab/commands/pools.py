"""``finrl-lab pools``: list the shipped pools (or a pool file's) with their tickers."""

from __future__ import annotations

import argparse

from finrl_lab.console import print_table
from finrl_lab.data.pools import read_pool_file, shipped_pools


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pools",
        help="list stock pools and their tickers",
        description="List the shipped stock pools, or the pools of a YAML file.",
    )
    parser.add_argument("file", nargs="?", help="a pool YAML file to list instead")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    pools = read_pool_file(args.file) if args.file else shipped_pools()
    rows = [
        [p.name, p.parent or "", len(p.tickers), " ".join(p.tickers), p.description]
        for p in pools.values()
    ]
    print_table(
        "stock pools", ["pool", "parent", "size", "tickers", "description"], rows
    )
    return 0
