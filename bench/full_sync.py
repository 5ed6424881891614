"""Full sync benchmark: ``sync_connection`` vs downloading alone vs the original notes' naive loop.

In one run, against one local Wedof sandbox and a throwaway PostgreSQL cluster:

1. download alone: the same pages through ``WedofClient.iter_pages`` (client only, nothing stored);
2. sync: ``worker.tasks.sync.sync_connection`` (full) into an empty database, in a child process;
3. naive loop: the original notes' approach, one query + one commit per stagiaire (per folder:
   SELECT the beneficiary, program and enrollment by external id, insert or update each, COMMIT);
   timed on a subset and extrapolated per folder (said so in the output);
4. re-sync of unchanged data (same database, nothing changed at Wedof);
5. peak RSS (the child's own VmHWM) for a sync of 10,000 and of 50,000 folders.

Where the time goes is printed too: the CPU seconds each process spent during the download and
during each sync (our process, the PostgreSQL server, the sandbox), read from /proc on Linux.

Syncs run in a child process timed as a warm worker (engine already connected; see child_sync).

Targets: sync ≤ 1.5× download; ≥ 10× faster than the naive loop; unchanged re-sync ≤ 1.2× download;
peak RSS flat between 10,000 and 50,000 folders.

Run: ``python -m bench.full_sync [--folders 10000] [--big 50000] [--naive-subset 1000]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def child_sync(connection_id: int) -> None:
    """Run one full sync in this process and print its time and peak RSS as JSON.

    Timed as in a running worker: the database engine is created and connected first (a worker
    does that once, not per sync), so a one-off import and connect cost is not counted.
    """
    from sqlalchemy import text

    from bdc.db import get_engine
    from worker.tasks.sync import sync_connection

    with get_engine().connect() as connection:
        connection.execute(text("SELECT 1"))
    cpu_before = own_cpu_seconds()
    started = time.perf_counter()
    result = sync_connection(connection_id, "all", True, None, "manual")
    elapsed = time.perf_counter() - started
    print(json.dumps({"seconds": elapsed, "cpu_seconds": own_cpu_seconds() - cpu_before,
                      "peak_rss_kib": peak_rss_kib(), "result": result}))


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu_seconds(pid: int, with_reaped_children: bool = False) -> float:
    """CPU seconds of a live process (Linux /proc), plus its exited children's when asked.

    The PostgreSQL postmaster collects the CPU of every backend that has exited, so its own
    count with reaped children, plus its live children, is the whole server's CPU.
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if with_reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def server_cpu_seconds(postmaster_pid: int) -> float:
    total = process_cpu_seconds(postmaster_pid, with_reaped_children=True)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == postmaster_pid:
                total += process_cpu_seconds(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue  # a backend that exited meanwhile is counted by the postmaster
    return total


class CpuMeter:
    """CPU seconds spent by the PostgreSQL server and the sandbox between two readings."""

    def __init__(self, cluster, sandbox):
        self.postmaster = int((cluster.datadir / "postmaster.pid").read_text().split()[0])
        self.sandbox = sandbox.process.pid

    def read(self) -> dict[str, float]:
        try:
            return {"postgres": server_cpu_seconds(self.postmaster), "sandbox": process_cpu_seconds(self.sandbox)}
        except OSError:  # not Linux: the figures are left out
            return {}

    @staticmethod
    def spent(before: dict, after: dict) -> dict[str, float]:
        return {name: after[name] - before[name] for name in after if name in before}


def peak_rss_kib() -> int:
    """This process's own peak RSS: VmHWM (Linux), reset by exec.

    Not ``ru_maxrss``: Linux keeps it across fork and exec, so a child started by a big parent
    reports the parent's size (the bench parent holds the sandbox's whole truth).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_child_sync(env: dict, connection_id: int) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.full_sync", "--child-sync", str(connection_id)],
                         cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    data = json.loads(out.stdout.strip().splitlines()[-1])
    if data["result"].get("status") != "succeeded":
        raise RuntimeError(f"sync did not succeed: {data['result']}")
    return data


def download_alone(api_url: str, api_key: str) -> tuple[float, int, float]:
    """(seconds, folders, CPU seconds of this process) to download every page, storing nothing."""
    from wedof.client import WedofClient

    cpu_before = own_cpu_seconds()
    started = time.perf_counter()
    count = 0
    with WedofClient(api_url, api_key) as client:
        for _page, folders, _total in client.iter_pages(sort="lastUpdate", order="asc", limit=100):
            count += len(folders)
    return time.perf_counter() - started, count, own_cpu_seconds() - cpu_before


def naive_loop(database_url: str, tenant_id: int, folders: list[dict]) -> float:
    """The original notes' loop: per stagiaire, look it up, insert or update, commit."""
    from sqlalchemy import select

    from bdc.db import get_sessionmaker
    from bdc.models import Beneficiary, Enrollment, Program, User, UserRole
    from wedof.mapping import enrollment_status_for
    from wedof.mapping.values import datetime_utc, percent, whole_percent

    maker = get_sessionmaker(database_url)
    started = time.perf_counter()
    for folder in folders:
        with maker() as session:
            attendee, action = folder["attendee"], folder["trainingActionInfo"]
            beneficiary = session.scalar(select(Beneficiary).where(
                Beneficiary.tenant_id == tenant_id, Beneficiary.external_id == str(attendee["id"])))
            if beneficiary is None:
                user = User(tenant_id=tenant_id, role=UserRole.STUDENT)
                beneficiary = Beneficiary(tenant_id=tenant_id, external_id=str(attendee["id"]), user=user)
                session.add(beneficiary)
            beneficiary.user.first_name = attendee.get("firstName")
            beneficiary.user.last_name = attendee.get("lastName")
            beneficiary.phone = attendee.get("phoneNumber")
            session.commit()
            program = session.scalar(select(Program).where(
                Program.tenant_id == tenant_id, Program.external_id == action["externalId"]))
            if program is None:
                program = Program(tenant_id=tenant_id, external_id=action["externalId"], name=action.get("title") or "?")
                session.add(program)
            program.duration_hours = action.get("indicativeDuration")
            session.commit()
            enrollment = session.scalar(select(Enrollment).where(
                Enrollment.tenant_id == tenant_id, Enrollment.external_id == folder["externalId"]))
            if enrollment is None:
                enrollment = Enrollment(tenant_id=tenant_id, external_id=folder["externalId"],
                                        beneficiary_id=beneficiary.id, program_id=program.id)
                session.add(enrollment)
            enrollment.status = enrollment_status_for(folder["state"])
            enrollment.wedof_state = folder["state"]
            rate = percent(folder.get("completionRate"))
            enrollment.progress = whole_percent(rate) if rate is not None else 0
            enrollment.wedof_last_update = datetime_utc(folder["lastUpdate"])
            session.commit()
    return time.perf_counter() - started


def fresh_database(cluster, name: str) -> str:
    from sqlalchemy import create_engine, text

    from bdc.migrate import upgrade

    admin = create_engine(cluster.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = cluster.database_url(name)
    upgrade(url)
    return url


def make_connection(database_url: str, api_url: str, api_key: str, slug: str) -> tuple[int, int]:
    from bdc.db import session_scope
    from bdc.models import Tenant, WedofConnection

    with session_scope(database_url) as session:
        tenant = Tenant(name=slug, slug=slug)
        session.add(tenant)
        session.flush()
        connection = WedofConnection(tenant_id=tenant.id, base_url=api_url, api_key=api_key,
                                     rate_limit_per_second=100000)
        session.add(connection)
        session.flush()
        return tenant.id, connection.id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folders", type=int, default=10_000)
    parser.add_argument("--big", type=int, default=50_000, help="second size for the peak-RSS comparison (0: skip)")
    parser.add_argument("--naive-subset", type=int, default=1_000)
    parser.add_argument("--child-sync", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_sync is not None:
        child_sync(args.child_sync)
        return

    from cryptography.fernet import Fernet

    os.environ.setdefault("APP_ENV", "test")
    os.environ.setdefault("SECRET_ENCRYPTION_KEY", Fernet.generate_key().decode())
    os.environ.setdefault("JWT_SECRET_KEY", "bench-jwt-secret-key-long-enough")
    os.environ["BDC_VAR_DIR"] = tempfile.mkdtemp(prefix="bdc-bench-")
    import requests

    from bdc.db import dispose_engines
    from bdc.settings import reset_settings_cache
    from tests.support.sandbox import running_sandbox
    from tests.support.services import PostgresCluster, RedisServer

    redis_server = RedisServer().start()
    cluster = PostgresCluster().start()
    try:
        with running_sandbox(folders=args.folders, seed=42, startup_timeout=300) as sandbox:
            url = fresh_database(cluster, "bench_sync")
            env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": redis_server.url,
                   "PYTHONPATH": str(PROJECT_ROOT)}
            os.environ.update(DATABASE_URL=url, REDIS_URL=redis_server.url)
            reset_settings_cache()
            _tenant, connection_id = make_connection(url, sandbox.api_url, sandbox.api_key, "bench")
            dispose_engines()

            meter = CpuMeter(cluster, sandbox)
            cpu = {}
            before = meter.read()
            download_s, count, download_cpu = download_alone(sandbox.api_url, sandbox.api_key)
            cpu["download"] = {"ours": download_cpu, **meter.spent(before, meter.read())}
            runs = {}
            for name in ("sync", "resync"):  # into the empty database, then the same data again
                before = meter.read()
                runs[name] = run_child_sync(env, connection_id)
                cpu[name] = {"ours": runs[name]["cpu_seconds"], **meter.spent(before, meter.read())}
            sync, resync = runs["sync"], runs["resync"]
            download2_s, _, _ = download_alone(sandbox.api_url, sandbox.api_key)
            download_s = min(download_s, download2_s)  # the fairer (warmer) of two downloads

            folders = json.loads(requests.get(f"{sandbox.url}/_sandbox/truth", timeout=300).content)
            subset = folders[: args.naive_subset]
            naive_url = fresh_database(cluster, "bench_naive")
            naive_tenant, _ = make_connection(naive_url, sandbox.api_url, sandbox.api_key, "naive")
            naive_s = naive_loop(naive_url, naive_tenant, subset)
            naive_per_folder = naive_s / len(subset)
            naive_extrapolated = naive_per_folder * count
            dispose_engines()

            rss_big = None
            if args.big:
                sandbox.control("POST", "/reset", json={"folders": args.big, "seed": 42}, timeout=600)
                big_url = fresh_database(cluster, "bench_big")
                _t, big_connection = make_connection(big_url, sandbox.api_url, sandbox.api_key, "big")
                dispose_engines()
                rss_big = run_child_sync({**env, "DATABASE_URL": big_url}, big_connection)
    finally:
        cluster.cleanup()
        redis_server.cleanup()

    sync_s, resync_s = sync["seconds"], resync["seconds"]
    print(f"folders                      {count}")
    print(f"download alone               {download_s:8.2f} s")
    print(f"sync (empty database)        {sync_s:8.2f} s   ratio to download {sync_s / download_s:5.2f}x  (target <= 1.5x)")
    print(f"re-sync (unchanged data)     {resync_s:8.2f} s   ratio to download {resync_s / download_s:5.2f}x  (target <= 1.2x)")
    print(f"naive loop, {len(subset)} folders      {naive_s:8.2f} s   = {naive_per_folder * 1000:.2f} ms/folder")
    print(f"naive loop, extrapolated     {naive_extrapolated:8.2f} s   (timed on the first {len(subset)} folders, "
          f"extrapolated per folder to {count})")
    print(f"sync speed-up over naive     {naive_extrapolated / sync_s:8.1f}x  (target >= 10x)")
    print(f"peak RSS sync {count:>6}        {sync['peak_rss_kib'] / 1024:8.1f} MiB")
    print("CPU seconds spent (2 cores shared by all three):")
    for name, spent in cpu.items():
        print(f"  {name:<10} " + "  ".join(f"{who} {seconds:6.2f}" for who, seconds in spent.items()))
    if rss_big is not None:
        ratio = rss_big["peak_rss_kib"] / sync["peak_rss_kib"]
        print(f"peak RSS sync {args.big:>6}        {rss_big['peak_rss_kib'] / 1024:8.1f} MiB   ratio {ratio:4.2f}x "
              f"(target: flat, ~1.0x)  sync took {rss_big['seconds']:.1f} s")


if __name__ == "__main__":
    main()
