"""Make the sandbox's API "change", as Wedof's may one day: keys added to or removed from every folder served.

``PUT /_sandbox/api-changes {"add": {"attendee.newField": "x"}, "remove": ["attendeeState"],
"total_count": "omit"}`` (POST is the same; GET shows it; DELETE goes back to the real API):

- ``add``: dotted path -> JSON value, set on every folder served (listings, GET, webhook bodies, /truth)
  wherever the parent object exists; ``remove``: dotted paths taken out of them. The folders themselves
  (states, transitions, filters) are untouched: only what is served changes.
- ``total_count``: ``send`` (default), ``omit`` (no ``X-Total-Count`` on ``/registrationFolders``
  listings) or ``garbage`` (a value that is not a count).

Paths are 1 to 4 segments of letters, digits and ``_``; at most 50 of each. ``/_sandbox/reset`` drops the
changes with the rest.
"""

from __future__ import annotations

import re

from .errors import invalid

MAX_PATHS = 50
TOTAL_COUNT_MODES = ("send", "omit", "garbage")
GARBAGE_TOTAL = "lots"
_SEGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def _path(raw, name: str) -> tuple[str, ...]:
    if not isinstance(raw, str):
        raise invalid(name, "A dotted path string such as attendee.newField.")
    parts = tuple(raw.split("."))
    if not 1 <= len(parts) <= 4 or not all(_SEGMENT.fullmatch(part) for part in parts):
        raise invalid(name, f"Not a dotted path of 1 to 4 names: {raw[:80]!r}.")
    return parts


class ApiChanges:
    def __init__(self) -> None:
        self.add: dict[tuple[str, ...], object] = {}
        self.remove: list[tuple[str, ...]] = []
        self.total_count = "send"

    @property
    def reshapes(self) -> bool:
        return bool(self.add or self.remove)

    def configure(self, body) -> None:
        """Replace the changes with ``body`` (checked whole first: a bad body changes nothing)."""
        if not isinstance(body, dict):
            raise invalid("body", "A JSON object with add, remove and/or total_count.")
        unknown = sorted(set(body) - {"add", "remove", "total_count"})
        if unknown:
            raise invalid(unknown[0], "Unknown field; allowed: add, remove, total_count.")
        add = body.get("add", {})
        remove = body.get("remove", [])
        total_count = body.get("total_count", "send")
        if not isinstance(add, dict) or len(add) > MAX_PATHS:
            raise invalid("add", f"An object of at most {MAX_PATHS} dotted paths.")
        if not isinstance(remove, list) or len(remove) > MAX_PATHS:
            raise invalid("remove", f"A list of at most {MAX_PATHS} dotted paths.")
        if total_count not in TOTAL_COUNT_MODES:
            raise invalid("total_count", f"One of {', '.join(TOTAL_COUNT_MODES)}.")
        added = {_path(key, "add"): value for key, value in add.items()}
        removed = [_path(item, "remove") for item in remove]
        self.add, self.remove, self.total_count = added, removed, total_count

    def clear(self) -> None:
        self.__init__()

    def snapshot(self) -> dict:
        return {"add": {".".join(k): v for k, v in self.add.items()}, "remove": [".".join(p) for p in self.remove],
                "total_count": self.total_count}

    def apply(self, folder: dict) -> dict:
        """A copy of ``folder`` as the changed API serves it (copied only along the paths changed)."""
        served = dict(folder)
        for path in self.remove:
            parent = self._parent(served, path)
            if parent is not None:
                parent.pop(path[-1], None)
        for path, value in self.add.items():
            parent = self._parent(served, path)
            if parent is not None:
                parent[path[-1]] = value
        return served

    @staticmethod
    def _parent(served: dict, path: tuple[str, ...]) -> dict | None:
        node = served
        for name in path[:-1]:
            child = node.get(name)
            if not isinstance(child, dict):
                return None
            child = dict(child)  # never write into the stored folder (or an object it shares)
            node[name] = child
            node = child
        return node

    def listing_headers(self, headers: dict) -> dict:
        if self.total_count == "omit":
            headers.pop("X-Total-Count", None)
        elif self.total_count == "garbage":
            headers["X-Total-Count"] = GARBAGE_TOTAL
        return headers
