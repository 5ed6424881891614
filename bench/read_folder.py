"""Reading benchmark: ``read_folder`` / ``read_version`` per folder vs ``json.loads`` of the same folders.

Folders: the sandbox's own seeded population (``wedof_sandbox.population.generate``, no HTTP) plus
the published samples in tests/fixtures/wedof (the certification sample is a rejection, as in a sync).
The baseline, timed on the very same folders in the same process, is ``json.loads`` of each folder's
JSON text: what receiving it costs anyway. Reading is a small part of a sync (see bench/full_sync.py);
this says how small.

Each figure is the best of ``--repeats`` passes (the least disturbed one on a shared machine); the
passes of all candidates interleave, so a noisy moment does not favour one of them.

Run: ``python -m bench.read_folder [--folders 10000] [--seed 1] [--repeats 9]``
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from wedof import samples
from wedof.mapping import folder as current_folder


def population(count: int, seed: int, certification: bool = True) -> list[Any]:
    """``count`` sandbox folders, then the published samples (registration, and certification unless told)."""
    from wedof_sandbox.population import generate

    folders: list[Any] = list(generate(count, seed).folders)
    folders.append(samples.registration_folder_sample())
    if certification:
        folders.append(samples.certification_folder_sample())
    return folders


CHUNK = 500  # folders per timed pass: short passes, so a noisy moment spoils few of them


def pass_seconds(read: Callable[[Any], Any], items: Sequence[Any]) -> float:
    """CPU seconds for one pass of ``read`` over ``items`` (a rejection counts as a read, as in a sync)."""
    rejected = current_folder.FolderRejected
    started = time.process_time()
    for item in items:
        try:
            read(item)
        except rejected:
            pass
    return time.process_time() - started


def best_us_per_item(candidates: dict[str, tuple[Callable[[Any], Any], Sequence[Any]]],
                     repeats: int) -> dict[str, float]:
    """µs per item of each candidate: per chunk of items the best of ``repeats`` passes, summed.

    The passes of all candidates interleave, so a noisy moment of the shared machine does not
    favour one of them; the best of many short passes is what the code costs when undisturbed.
    """
    best: dict[str, list[float]] = {}
    for name, (_, items) in candidates.items():
        best[name] = [float("inf")] * -(-len(items) // CHUNK)
    for _ in range(repeats):
        for name, (read, items) in candidates.items():
            for index, start in enumerate(range(0, len(items), CHUNK)):
                seconds = pass_seconds(read, items[start:start + CHUNK])
                best[name][index] = min(best[name][index], seconds)
    return {name: sum(best[name]) / len(items) * 1e6 for name, (_, items) in candidates.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folders", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args(argv)

    folders = population(args.folders, args.seed)
    texts = [json.dumps(folder) for folder in folders]
    # A sync holds one page at a time, not 10,000 folders: keep the collector from walking them over
    # and over (it would charge whoever allocates most with the size of this test heap).
    gc.collect()
    gc.freeze()
    print(f"{len(folders)} folders ({args.folders} sandbox, seed {args.seed}, + 2 published samples), "
          f"best of {args.repeats} passes")

    figures = best_us_per_item({
        "json.loads (baseline)": (json.loads, texts),
        "read_folder": (current_folder.read_folder, folders),
        "read_version": (current_folder.read_version, folders),
    }, args.repeats)
    loads = figures["json.loads (baseline)"]
    for name, us in figures.items():
        print(f"  {name:<24} {us:8.2f} µs/folder   {us / loads:5.2f}x json.loads")


if __name__ == "__main__":
    main()
