"""CLI: ``python -m wedof_sandbox --port 8090 --folders 1000 --seed 42 --api-key sandbox-key``.

Serves the sandbox with werkzeug's threaded server in ONE process (all state is in memory) and prints
``wedof-sandbox listening on http://HOST:PORT`` once ready (``--port 0`` picks a free port).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from werkzeug.serving import make_server

from . import population
from .app import create_app
from .signing import ALGORITHMS, ENCODINGS
from .state import SandboxState


def _delays(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("comma-separated seconds, e.g. 0.2,0.5,1") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="wedof_sandbox", description="A local Wedof speaking the real API.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8090)
    p.add_argument("--folders", type=int, default=1000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--api-key", default="sandbox-key")
    p.add_argument("--siret", default=population.DEFAULT_SIRET)
    p.add_argument("--organism-name", default=population.DEFAULT_ORGANISM)
    p.add_argument("--anchor", default=population.DEFAULT_ANCHOR, help="population dates end here")
    faults = p.add_argument_group("faults on /api/*")
    faults.add_argument("--latency-ms", type=float, default=0)
    faults.add_argument("--error-rate", type=float, default=0.0)
    faults.add_argument("--rate-limit-rate", type=float, default=0.0)
    faults.add_argument("--retry-after", type=int, default=1)
    faults.add_argument("--drop-rate", type=float, default=0.0)
    hooks = p.add_argument_group("webhook deliveries")
    hooks.add_argument("--signature-algorithm", choices=ALGORITHMS, default="sha256")
    hooks.add_argument("--signature-encoding", choices=ENCODINGS, default="hex")
    hooks.add_argument("--duplicate-rate", type=float, default=0.0)
    hooks.add_argument("--out-of-order-rate", type=float, default=0.0)
    hooks.add_argument("--bad-signature-rate", type=float, default=0.0)
    hooks.add_argument("--malformed-rate", type=float, default=0.0)
    hooks.add_argument("--retry-delays", type=_delays, default=None, help="e.g. 0.2,0.5,1,2,5")
    hooks.add_argument("--delivery-timeout", type=float, default=5.0)
    hooks.add_argument("--delivery-threads", type=int, default=4)
    p.add_argument("--access-log", action="store_true", help="log every request to stderr")
    return p.parse_args(argv)


def build_state(args: argparse.Namespace) -> SandboxState:
    delivery = {"signature_algorithm": args.signature_algorithm, "signature_encoding": args.signature_encoding,
                "duplicate_rate": args.duplicate_rate, "out_of_order_rate": args.out_of_order_rate,
                "bad_signature_rate": args.bad_signature_rate, "malformed_rate": args.malformed_rate,
                "timeout": args.delivery_timeout}
    if args.retry_delays is not None:
        delivery["retry_delays"] = args.retry_delays
    faults = {"latency_ms": args.latency_ms, "error_rate": args.error_rate,
              "rate_limit_rate": args.rate_limit_rate, "retry_after": args.retry_after,
              "drop_rate": args.drop_rate}
    return SandboxState(folders=args.folders, seed=args.seed, api_key=args.api_key, siret=args.siret,
                        organism_name=args.organism_name, anchor=args.anchor, faults=faults,
                        delivery=delivery, delivery_threads=max(1, args.delivery_threads))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.INFO if args.access_log else logging.WARNING)
    if args.folders < 0:
        print("--folders must be >= 0", file=sys.stderr)
        return 2
    try:
        state = build_state(args)
    except Exception as exc:  # invalid rates and the like: ApiError carries a readable detail
        print(f"wedof-sandbox: invalid option: {getattr(exc, 'detail', exc)}", file=sys.stderr)
        return 2
    server = make_server(args.host, args.port, create_app(state), threaded=True)
    server.daemon_threads = True

    def stop(_signum, _frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"wedof-sandbox listening on http://{args.host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    finally:
        state.close()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
