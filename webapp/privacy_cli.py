"""The personal-data commands of ``python -m webapp.cli``: ``gdpr-export`` and ``gdpr-erase``.

Both name the tenant by slug and the beneficiary by id (or by Wedof attendee id with ``--attendee``),
and call :mod:`privacy`, as the admin API does. Bad arguments exit 2 with one line saying why.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from sqlalchemy import select

from bdc.db import session_scope
from bdc.models import Beneficiary, Tenant

EXIT_BAD_INPUT = 2
ACTOR = "cli"
_ID = re.compile(r"[0-9]{1,12}")


class CommandRefused(Exception):
    """Bad input: the message is the one line printed."""


def _beneficiary_id(raw: str) -> int:
    if not _ID.fullmatch(raw.strip()):
        raise argparse.ArgumentTypeError(f"not a beneficiary id (a positive whole number): {raw[:40]!r}")
    return int(raw)


def _find(session, args: argparse.Namespace) -> Beneficiary:
    tenant = session.scalar(select(Tenant).where(Tenant.slug == args.tenant.strip().lower()))
    if tenant is None:
        raise CommandRefused(f"no tenant with the slug {args.tenant[:80]!r}")
    if args.attendee is not None:
        beneficiary = session.scalar(select(Beneficiary).where(Beneficiary.tenant_id == tenant.id,
                                                               Beneficiary.external_id == args.attendee.strip()))
        what = f"with the Wedof attendee id {args.attendee[:64]!r}"
    else:
        beneficiary = session.get(Beneficiary, args.beneficiary) if args.beneficiary <= 2**31 - 1 else None
        what = f"{args.beneficiary}"
        if beneficiary is not None and beneficiary.tenant_id != tenant.id:
            beneficiary = None  # another tenant's: not found, as the admin API answers
    if beneficiary is None:
        raise CommandRefused(f"tenant {tenant.slug} has no beneficiary {what}")
    return beneficiary


def cmd_gdpr_export(args: argparse.Namespace) -> int:
    """Write everything held about one beneficiary as JSON, to --out or stdout (audited, actor "cli")."""
    from privacy import export_beneficiary

    out = Path(args.out) if args.out else None
    if out is not None and (out.is_dir() or not out.parent.is_dir()):
        raise CommandRefused(f"cannot write {args.out!r}: not a file in an existing folder")
    with session_scope() as session:
        document = export_beneficiary(session, _find(session, args), actor=ACTOR,
                                      include_raw_bodies=args.include_raw_bodies)
    text = json.dumps(document, ensure_ascii=False, indent=2)
    if out is None:
        print(text)
    else:
        out.write_text(text + "\n", encoding="utf-8")
        print(f"Export of beneficiary {document['beneficiary']['id']} written to {out}", file=sys.stderr)
    return 0


def cmd_gdpr_erase(args: argparse.Namespace) -> int:
    """Erase one beneficiary's personal data on its request (needs --yes; audited, actor "cli")."""
    from privacy import erase_beneficiary

    if not args.yes:
        raise CommandRefused("erasure cannot be undone: add --yes to confirm")
    with session_scope() as session:
        beneficiary = _find(session, args)
        done = erase_beneficiary(session, beneficiary, actor=ACTOR)
        beneficiary_id = beneficiary.id
    print(f"Beneficiary {beneficiary_id} erased: " + ", ".join(f"{key} {value}" for key, value in done.items()))
    return 0


def _target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenant", required=True, help="the tenant's slug")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--beneficiary", type=_beneficiary_id, help="the beneficiary's id")
    who.add_argument("--attendee", help="or its Wedof attendee id")


def guarded(command):
    """The command, with a refusal printed as one line and exit 2."""
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except CommandRefused as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
    return run


def add_commands(commands) -> None:
    export = commands.add_parser("gdpr-export", help="export everything held about one beneficiary as JSON")
    _target(export)
    export.add_argument("--out", help="file to write (default: stdout)")
    export.add_argument("--include-raw-bodies", action="store_true", help="add the inbox events' raw bodies")
    export.set_defaults(func=guarded(cmd_gdpr_export))
    erase = commands.add_parser("gdpr-erase", help="erase one beneficiary's personal data (cannot be undone)")
    _target(erase)
    erase.add_argument("--yes", action="store_true", help="confirm the erasure")
    erase.set_defaults(func=guarded(cmd_gdpr_erase))
