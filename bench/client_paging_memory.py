"""Peak memory of paging through registration folders: 1,000 vs 10,000 folders.

Starts one local Wedof sandbox with 10,000 folders, then, each in a fresh child process, streams
the first 1,000 and then all 10,000 folders through ``WedofClient.iter_registration_folders``
(pages of 100) and reads the child's peak RSS (``ru_maxrss``). Streaming holds one page at a
time, so the ratio should stay near 1.0x. As a contrast, a third child keeps all 10,000 folders
in a list, showing what the measurement looks like when memory does grow.

Run: ``python -m bench.client_paging_memory [--folders 10000] [--small 1000] [--limit 100]``
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def child(url: str, api_key: str, count: int, limit: int, keep: bool) -> None:
    from wedof.client import WedofClient

    started = time.perf_counter()
    kept, seen, checksum = [], 0, 0
    with WedofClient(url, api_key) as client:
        for folder in client.iter_registration_folders(limit=limit, sort="id", order="asc"):
            checksum += len(folder["externalId"])  # touch every folder, keep none
            if keep:
                kept.append(folder)
            seen += 1
            if seen >= count:
                break
    elapsed = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"folders": seen, "peak_rss_kib": peak_kib, "seconds": elapsed, "kept": len(kept)}))


def measure(url: str, api_key: str, count: int, limit: int, keep: bool = False) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "bench.client_paging_memory",
        "--child",
        url,
        api_key,
        str(count),
        str(limit),
    ]
    if keep:
        cmd.append("--keep")
    out = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folders", type=int, default=10_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--child", nargs=4, metavar=("URL", "KEY", "COUNT", "LIMIT"))
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if args.child:
        url, key, count, limit = args.child
        child(url, key, int(count), int(limit), args.keep)
        return

    sys.path.insert(0, str(PROJECT_ROOT))
    from tests.support.sandbox import running_sandbox

    with running_sandbox(folders=args.folders, seed=1) as sandbox:
        small = measure(sandbox.api_url, sandbox.api_key, args.small, args.limit)
        large = measure(sandbox.api_url, sandbox.api_key, args.folders, args.limit)
        kept = measure(sandbox.api_url, sandbox.api_key, args.folders, args.limit, keep=True)
    if small["folders"] != args.small or large["folders"] != args.folders:
        raise SystemExit(
            f"expected {args.small}/{args.folders} folders, got {small['folders']}/{large['folders']}"
        )
    print(f"pages of {args.limit}, peak RSS of a fresh child process (ru_maxrss)")
    for label, row in (
        (f"stream {args.small:>6,}", small),
        (f"stream {args.folders:>6,}", large),
        (f"list() {args.folders:>6,}", kept),
    ):
        rate = row["folders"] / row["seconds"] if row["seconds"] else float("inf")
        print(f"  {label} folders: {row['peak_rss_kib'] / 1024:8.1f} MiB   ({rate:,.0f} folders/s)")
    print(
        f"ratio stream {args.folders:,} / stream {args.small:,}: {large['peak_rss_kib'] / small['peak_rss_kib']:.2f}x"
        "  (flat = 1.0x)"
    )
    print(
        f"ratio list() {args.folders:,} / stream {args.small:,}: {kept['peak_rss_kib'] / small['peak_rss_kib']:.2f}x"
        "  (what keeping every folder costs)"
    )


if __name__ == "__main__":
    main()
