"""Command line for operators: ``python -m webapp.cli <command>`` (also installed as ``bdc-wedof``)."""

from __future__ import annotations

import argparse
import sys

from bdc.bootstrap import ensure_env_connection
from bdc.db import session_scope
from bdc.models import SyncKind, SyncTrigger
from bdc.settings import SettingsError, get_settings
from webapp.privacy_cli import add_commands as add_privacy_commands

EXIT_BAD_INPUT = 2


def cmd_bootstrap(_args: argparse.Namespace) -> int:
    """Create or refresh the tenant and connection that the environment describes."""
    settings = get_settings()
    with session_scope() as session:
        connection = ensure_env_connection(session, settings)
        if connection is None:
            print("No WEDOF_API_KEY / WEDOF_WEBHOOK_SECRET set: no connection configured from the environment.")
        else:
            print(f"Connection {connection.id} (tenant {connection.tenant_id}) configured from the environment; "
                  f"webhook URL: {connection.webhook_url}")
    return 0


def _token_for(user, hours: float) -> str:
    # Tokens are minted by jwt-extended inside an app context, exactly as the BDC host does.
    from datetime import timedelta

    from webapp.app import create_app
    from webapp.auth import issue_token

    with create_app().app_context():
        return issue_token(user, expires=timedelta(hours=hours))


def cmd_create_tenant(args: argparse.Namespace) -> int:
    """A tenant, its tenant_admin and its Wedof connection in one transaction; prints a token and the webhook URL."""
    from sqlalchemy.exc import IntegrityError

    from webapp.admin.provisioning import ProvisioningError, create_tenant_with_admin

    try:
        with session_scope() as session:
            done = create_tenant_with_admin(
                session, name=args.name, slug=args.slug, admin_email=args.admin_email,
                wedof_api_url=args.wedof_api_url, wedof_api_key=args.wedof_api_key,
                webhook_secret=args.webhook_secret)
            token = _token_for(done.admin, args.expires_hours)
            url = done.connection.webhook_url
            lines = [f"Tenant {done.tenant.id} ({done.tenant.slug}) created.",
                     f"Admin user {done.admin.id}: {done.admin.email} (tenant_admin)",
                     f"Wedof connection {done.connection.id}: {done.connection.base_url} "
                     f"(API key {'set' if done.connection.api_key else 'not set: PATCH connection to add it'})",
                     f"Webhook URL to paste into Wedof: {url}"]
            if done.generated_secret:
                lines.append(f"Webhook secret (shown once, paste it into Wedof too): {done.generated_secret}")
    except ProvisioningError as exc:
        print(f"error: {exc}; nothing was created.", file=sys.stderr)
        return EXIT_BAD_INPUT
    except IntegrityError:
        print("error: the slug or email was taken meanwhile; nothing was created.", file=sys.stderr)
        return EXIT_BAD_INPUT
    print("\n".join(lines))
    print(f"Access token ({args.expires_hours:g} h): {token}")
    print(f"Try it: curl -H 'Authorization: Bearer {token}' {get_settings().public_base_url}"
          "/api/integrations/wedof/status")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    """Print an access token for an existing user (its role and tenant as claims)."""
    from sqlalchemy import func, select

    from bdc.models import User

    with session_scope() as session:
        user = session.scalar(select(User).where(func.lower(User.email) == args.email.strip().lower()))
        if user is None:
            print(f"error: no user with the email {args.email[:80]!r}", file=sys.stderr)
            return EXIT_BAD_INPUT
        if not user.is_active:
            print(f"error: the user {user.email} is deactivated", file=sys.stderr)
            return EXIT_BAD_INPUT
        token = _token_for(user, args.expires_hours)
    print(token)
    return 0


DEMO_ADMIN_EMAIL = "admin@demo.example"


def cmd_demo(args: argparse.Namespace) -> int:
    """Demo mode (make run without a Wedof account): an admin for the env tenant, the sandbox's webhook, a first sync."""
    import time

    import requests
    from sqlalchemy import select

    from bdc.models import User, UserRole, WedofConnection
    from webapp.dispatch import BrokerUnavailable, send_task
    from worker.task_names import REGISTER_WEBHOOK, SYNC_CONNECTION

    settings = get_settings()
    with session_scope() as session:
        connection = ensure_env_connection(session, settings)
        if connection is None:
            print("error: demo mode needs WEDOF_API_KEY and WEDOF_WEBHOOK_SECRET", file=sys.stderr)
            return EXIT_BAD_INPUT
        admin = session.scalar(select(User).where(User.email == DEMO_ADMIN_EMAIL))
        if admin is None:
            admin = User(email=DEMO_ADMIN_EMAIL, first_name="Admin", last_name="Démo", role=UserRole.TENANT_ADMIN,
                         tenant_id=connection.tenant_id)
            session.add(admin)
            session.flush()
        token = _token_for(admin, args.expires_hours)
        connection_id = session.get(WedofConnection, connection.id).id

    # The receiver must be up before the sandbox can deliver to it; wait for it, bounded.
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{settings.public_base_url}/readyz", timeout=2).ok:
                break
        except requests.RequestException:
            pass
        time.sleep(1)
    else:
        print(f"error: the receiver at {settings.public_base_url} was not ready after {args.wait:g} s", file=sys.stderr)
        return 1
    try:
        send_task(REGISTER_WEBHOOK, [connection_id])
        send_task(SYNC_CONNECTION, [connection_id, SyncKind.ALL, True, None, SyncTrigger.MANUAL])
    except BrokerUnavailable as exc:
        print(f"error: could not queue the first sync: {exc}", file=sys.stderr)
        return 1
    print(f"Demo ready: webhook registered at the sandbox and a full sync queued.\n"
          f"  Integration page: {settings.public_base_url}/integrations/wedof?token={token}\n"
          f"  API token ({DEMO_ADMIN_EMAIL}): {token}")
    return 0


def _claims_of(token: str) -> dict | None:
    # Signature checked with JWT_SECRET_KEY (a forged exp must not choose how long the block lasts);
    # an expired token is still read: its jti is what is asked for.
    from flask_jwt_extended import decode_token
    from flask_jwt_extended.exceptions import JWTExtendedException
    from jwt.exceptions import PyJWTError

    from webapp.app import create_app

    with create_app().app_context():
        try:
            return decode_token(token, allow_expired=True)
        except (PyJWTError, JWTExtendedException, ValueError, TypeError):
            return None


def cmd_revoke_token(args: argparse.Namespace) -> int:
    """Revoke a token by its jti, or by the token itself (then kept exactly until the token expires)."""
    import time
    from datetime import UTC, datetime

    from bdc.audit import record_audit
    from webapp import token_revocation

    if (args.jti is None) == (args.token is None):
        print("error: give a jti or --token <jwt>, not both", file=sys.stderr)
        return EXIT_BAD_INPUT
    subject, tenant_id = None, None
    if args.token is not None:
        raw = sys.stdin.readline() if args.token == "-" else args.token  # "-": kept out of ps and shell history
        claims = _claims_of(raw.strip())
        if claims is None:
            print("error: not a token signed with this JWT_SECRET_KEY; nothing was revoked", file=sys.stderr)
            return EXIT_BAD_INPUT
        jti, expires_at = claims.get("jti"), claims.get("exp")
        subject, tenant_id = claims.get("sub"), claims.get("tenant_id")
        if not isinstance(expires_at, int | float):
            expires_at = None
    else:
        jti, expires_at = args.jti.strip(), time.time() + token_revocation.UNKNOWN_LIFETIME_SECONDS
    if not token_revocation.valid_jti(jti):
        print("error: a jti is 1 to 100 printable characters without spaces; nothing was revoked", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        kept = token_revocation.revoke(get_settings().redis_url, jti, expires_at)
    except token_revocation.RevocationUnavailable as exc:
        print(f"error: Redis is unreachable ({exc}); nothing was revoked", file=sys.stderr)
        return 1
    if kept == 0:
        print(f"Token {jti} has already expired: nothing to revoke.")
        return 0
    expires = datetime.fromtimestamp(expires_at, UTC).isoformat() if expires_at is not None else None
    with session_scope() as session:
        record_audit(session, actor="cli", action="token.revoked",
                     tenant_id=tenant_id if isinstance(tenant_id, int) else None, target=("token", jti),
                     details={"via": "cli", "expires_at": expires,
                              "subject": subject if isinstance(subject, str) else None})
    print(f"Token {jti} revoked until {expires or 'for ever (the token never expires)'}.")
    return 0


def _hours(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of hours: {raw!r}") from None
    if not 0 < value <= 24 * 90:
        raise argparse.ArgumentTypeError("expires-hours must be between 0 and 2160")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bdc-wedof", description="Operate the BDC ↔ Wedof integration.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("bootstrap", help="apply the environment's Wedof connection to the database").set_defaults(
        func=cmd_bootstrap)
    create = commands.add_parser("create-tenant", help="create a tenant, its admin and Wedof connection; print a token")
    create.add_argument("--name", required=True, help="the organisation's name")
    create.add_argument("--slug", required=True, help="lowercase identifier, e.g. acme-formation")
    create.add_argument("--admin-email", required=True, help="email of the tenant_admin to create")
    create.add_argument("--wedof-api-url", default="https://www.wedof.fr/api")
    create.add_argument("--wedof-api-key", default=None, help="the organism's Wedof API key (can be set later)")
    create.add_argument("--webhook-secret", default=None, help="generated and printed once when omitted")
    create.add_argument("--expires-hours", type=_hours, default=12.0, help="token lifetime (default 12)")
    create.set_defaults(func=cmd_create_tenant)
    token = commands.add_parser("token", help="print an access token for an existing user")
    token.add_argument("--email", required=True)
    token.add_argument("--expires-hours", type=_hours, default=12.0)
    token.set_defaults(func=cmd_token)
    revoke = commands.add_parser("revoke-token", help="revoke a token: refused by the admin API from now on")
    revoke.add_argument("jti", nargs="?", default=None, help="the token's jti (kept 90 days: the token is unknown)")
    revoke.add_argument("--token", default=None,
                        help="the token itself, or - to read it from standard input (its jti is kept until it expires)")
    revoke.set_defaults(func=cmd_revoke_token)
    demo = commands.add_parser("demo", help="demo mode: admin user, sandbox webhook and a first sync; print a token")
    demo.add_argument("--expires-hours", type=_hours, default=12.0)
    demo.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the receiver (default 60)")
    demo.set_defaults(func=cmd_demo)
    add_privacy_commands(commands)
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
