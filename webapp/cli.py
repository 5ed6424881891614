"""Command line for operators: ``python -m webapp.cli <command>`` (also installed as ``bdc-wedof``)."""

from __future__ import annotations

import argparse
import sys

from bdc.bootstrap import ensure_env_connection
from bdc.db import session_scope
from bdc.settings import SettingsError, get_settings


def cmd_bootstrap(_args: argparse.Namespace) -> int:
    """Create or refresh the tenant and connection that the environment describes."""
    settings = get_settings()
    with session_scope() as session:
        connection = ensure_env_connection(session, settings)
        if connection is None:
            print("No WEDOF_API_KEY / WEDOF_WEBHOOK_SECRET set: no connection configured from the environment.")
        else:
            print(f"Connection {connection.id} (tenant {connection.tenant_id}) configured from the environment; "
                  f"webhook URL: {settings.public_base_url}/api/webhooks/wedof")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bdc-wedof", description="Operate the BDC ↔ Wedof integration.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("bootstrap", help="apply the environment's Wedof connection to the database").set_defaults(
        func=cmd_bootstrap)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
