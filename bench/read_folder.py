"""Reading benchmark: ``read_folder`` / ``read_version`` per folder vs baselines measured in the same run.

Folders: the sandbox's own seeded population (``wedof_sandbox.population.generate``, no HTTP) plus
the published samples in tests/fixtures/wedof (the certification sample is a rejection, as in a sync).
Baselines, timed on the very same folders in the same process:

- ``json.loads`` of each folder's JSON text (what receiving it costs anyway);
- the frozen pre-optimisation implementation (tests/wedof/reference_folder.py).

Each figure is the best of ``--repeats`` passes (the least disturbed one on a shared machine); the\npasses of all candidates interleave, so a noisy moment does not favour one of them.
Target: current ``read_folder`` at least 3x cheaper than the reference.

Run: ``python -m bench.read_folder [--folders 10000] [--seed 1] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from tests.wedof import reference_folder
from wedof import samples
from wedof.mapping import folder as current_folder


def population(count: int, seed: int) -> list[Any]:
    """``count`` sandbox folders, then the published samples (registration and certification)."""
    from wedof_sandbox.population import generate

    folders: list[Any] = list(generate(count, seed).folders)
    folders.append(samples.registration_folder_sample())
    folders.append(samples.certification_folder_sample())
    return folders


def pass_seconds(read: Callable[[Any], Any], items: Sequence[Any]) -> float:
    """Seconds for one pass of ``read`` over ``items`` (a rejection counts as a read, as in a sync)."""
    rejected = current_folder.FolderRejected
    gc.collect()  # start each pass from the same heap, not after the previous pass's garbage
    started = time.perf_counter()
    for item in items:
        try:
            read(item)
        except rejected:
            pass
    return time.perf_counter() - started


def best_us_per_item(candidates: dict[str, tuple[Callable[[Any], Any], Sequence[Any]]],
                     repeats: int) -> dict[str, float]:
    """Best-of-``repeats`` µs per item of each candidate; passes interleave so noise hits all alike."""
    best = dict.fromkeys(candidates, float("inf"))
    for _ in range(repeats):
        for name, (read, items) in candidates.items():
            best[name] = min(best[name], pass_seconds(read, items))
    return {name: seconds / len(candidates[name][1]) * 1e6 for name, seconds in best.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folders", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    folders = population(args.folders, args.seed)
    texts = [json.dumps(folder) for folder in folders]
    print(f"{len(folders)} folders ({args.folders} sandbox, seed {args.seed}, + 2 published samples), "
          f"best of {args.repeats} passes")

    figures = best_us_per_item({
        "json.loads (baseline)": (json.loads, texts),
        "read_folder reference": (reference_folder.read_folder, folders),
        "read_folder current": (current_folder.read_folder, folders),
        "read_version reference": (reference_folder.read_version, folders),
        "read_version current": (current_folder.read_version, folders),
    }, args.repeats)
    loads = figures["json.loads (baseline)"]
    for name, us in figures.items():
        print(f"  {name:<24} {us:8.2f} µs/folder   {us / loads:5.2f}x json.loads")
    for what in ("read_folder", "read_version"):
        speedup = figures[f"{what} reference"] / figures[f"{what} current"]
        print(f"{what}: {speedup:.2f}x faster than the reference")
    print("target: read_folder >= 3x faster than the reference")


if __name__ == "__main__":
    main()
