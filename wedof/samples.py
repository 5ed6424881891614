"""Loader for the real Wedof sample objects (vendored in ``tests/fixtures/wedof``).

The samples were published by Wedof's own team; tests and demos use them to prove the code
accepts real payloads as they are. Looked up in ``WEDOF_FIXTURES_DIR`` when set, else in the
repository's ``tests/fixtures/wedof``, else in ``../shared/fixtures/wedof`` beside the project.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

REPO_FIXTURES_DIR = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "wedof"
SHARED_FIXTURES_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures" / "wedof"
REGISTRATION_FOLDER_SAMPLE = "registration-folder.activepieces-sample.json"
CERTIFICATION_FOLDER_SAMPLE = "certification-folder.activepieces-sample.json"


def fixtures_dir() -> Path:
    if os.environ.get("WEDOF_FIXTURES_DIR"):
        return Path(os.environ["WEDOF_FIXTURES_DIR"])
    return REPO_FIXTURES_DIR if REPO_FIXTURES_DIR.is_dir() else SHARED_FIXTURES_DIR


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
