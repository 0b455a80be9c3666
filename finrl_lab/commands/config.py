"""``finrl-lab config show``: print an experiment config with every default."""

from __future__ import annotations

import argparse

from finrl_lab.console import console
from finrl_lab.training.config import dump_yaml, load_yaml, resolve_config
from finrl_lab.training.registry import trainer_names


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "config",
        help="show experiment configs with their defaults",
        description="Print the full experiment config: the defaults for an "
        "agent, or a config file with its defaults filled in and validated.",
    )
    sub = parser.add_subparsers(dest="config_command", required=True)
    show = sub.add_parser("show", help="print a resolved config as YAML")
    show.add_argument("--agent", default="ppo", help="agent whose defaults to show")
    show.add_argument("--config", help="config file to resolve and validate")
    show.set_defaults(handler=run_show)
    agents = sub.add_parser("agents", help="list the agent names that can train")
    agents.set_defaults(handler=run_agents)


def run_show(args: argparse.Namespace) -> int:
    raw = load_yaml(args.config) if args.config else {"agent": {"name": args.agent}}
    console.print(dump_yaml(resolve_config(raw)), end="", markup=False, highlight=False)
    return 0


def run_agents(args: argparse.Namespace) -> int:
    for name in trainer_names():
        console.print(name)
    return 0
