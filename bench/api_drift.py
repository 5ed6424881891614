"""API drift benchmark: ``wedof.drift`` on each folder (and per page) vs ``json.loads`` of the same folders.

Folders: the sandbox's seeded population (``wedof_sandbox.population.generate``, no HTTP) plus the
published registration sample; a second set has Wedof's API "changed" on every folder (two new keys,
one expected key gone), which is the slower path (paths are built). The baseline, timed on the very
same folders in the same process, is ``json.loads`` of each folder's JSON text: what receiving it costs
anyway. Same method as ``bench.read_folder`` (best of interleaved short passes, CPU time).

Run: ``python -m bench.api_drift [--folders 10000] [--seed 1] [--repeats 9]``
"""

from __future__ import annotations

import argparse
import copy
import gc
import json

from bench.read_folder import best_us_per_item, population
from wedof.drift import folder_drift, observe

PAGE = 100


def changed(folder: dict) -> dict:
    served = copy.deepcopy(folder)
    served["proposal"] = {"code": "P1"}
    served["attendee"]["pronouns"] = "iel"
    served["attendee"].pop("phoneNumber", None)
    return served


def pages(folders: list) -> list[list]:
    return [folders[i:i + PAGE] for i in range(0, len(folders), PAGE)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folders", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args(argv)

    folders = population(args.folders, args.seed, certification=False)  # a registration-folder connection
    drifted = [changed(folder) for folder in folders]
    texts = [json.dumps(folder) for folder in folders]
    assert not observe(folders).drifted and observe(drifted).drifted
    gc.collect()
    gc.freeze()
    print(f"{len(folders)} folders ({args.folders} sandbox, seed {args.seed}, + the published sample), "
          f"best of {args.repeats} passes")
    figures = best_us_per_item({
        "json.loads (baseline)": (json.loads, texts),
        "folder_drift": (folder_drift, folders),
        "folder_drift, API changed": (folder_drift, drifted),
    }, args.repeats)
    per_page = best_us_per_item({"observe (page of 100)": (observe, pages(folders)),
                                 "observe, API changed": (observe, pages(drifted))}, args.repeats)
    loads = figures["json.loads (baseline)"]
    for name, us in figures.items():
        print(f"  {name:<28} {us:8.2f} µs/folder   {us / loads:5.2f}x json.loads")
    for name, us in per_page.items():
        folder_us = us / PAGE
        print(f"  {name:<28} {folder_us:8.2f} µs/folder   {folder_us / loads:5.2f}x json.loads")


if __name__ == "__main__":
    main()
