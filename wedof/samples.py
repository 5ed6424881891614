"""Loader for the real Wedof sample objects (``/work/shared/fixtures/wedof``).

The samples were published by Wedof's own team; tests and demos use them to prove the code
accepts real payloads as they are. ``WEDOF_FIXTURES_DIR`` overrides the location.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

DEFAULT_FIXTURES_DIR = Path("/work/shared/fixtures/wedof")
REGISTRATION_FOLDER_SAMPLE = "registration-folder.activepieces-sample.json"
CERTIFICATION_FOLDER_SAMPLE = "certification-folder.activepieces-sample.json"


def fixtures_dir() -> Path:
    return Path(os.environ.get("WEDOF_FIXTURES_DIR") or DEFAULT_FIXTURES_DIR)


def sample_bytes(name: str) -> bytes:
    """The raw bytes of one sample file (what a webhook body would carry)."""
    if "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"invalid sample name {name!r}")
    path = fixtures_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"Wedof sample {name!r} not found in {fixtures_dir()} (set WEDOF_FIXTURES_DIR)")
    return path.read_bytes()


def load_sample(name: str) -> Any:
    return json.loads(sample_bytes(name))


def registration_folder_sample() -> dict[str, Any]:
    return load_sample(REGISTRATION_FOLDER_SAMPLE)


def certification_folder_sample() -> dict[str, Any]:
    return load_sample(CERTIFICATION_FOLDER_SAMPLE)
