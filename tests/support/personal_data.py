"""The sandbox's personal values (names, emails, phones, birth dates), and a scan of log files for them.

The sandbox's population is generated from its seed, so a test regenerates it to know exactly which
values a run's logs must never contain.
"""

from __future__ import annotations

import re
from pathlib import Path

from wedof_sandbox.population import generate

_MIN_PHONE_DIGITS = 9


def sandbox_personal_values(folders: int, seed: int) -> set[str]:
    """Emails, phone numbers, full names and birth dates of the sandbox's attendees."""
    values: set[str] = set()
    for folder in generate(folders, seed).folders:
        attendee = folder.get("attendee") or {}
        first, last = attendee.get("firstName") or "", attendee.get("lastName") or ""
        if first and last:
            values.update({f"{first} {last}", f"{last} {first}", f"{first.upper()} {last.upper()}"})
        if attendee.get("email"):
            values.add(attendee["email"])
        for key in ("phoneNumber", "phoneFixed"):
            phone = attendee.get(key) or ""
            if len(re.sub(r"\D", "", phone)) >= _MIN_PHONE_DIGITS:
                values.add(phone)
        born = attendee.get("dateOfBirth")
        if born:
            values.update({born, born[:10]})
    return values


def find_personal_values(paths: list[Path], values: set[str], limit: int = 20) -> list[tuple[str, str, str]]:
    """(file, value, line excerpt) for each log line holding one of ``values`` (up to ``limit``)."""
    found: list[tuple[str, str, str]] = []
    pattern = re.compile("|".join(re.escape(v) for v in sorted(values, key=len, reverse=True)))
    for path in paths:
        with path.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                match = pattern.search(line)
                if match:
                    found.append((path.name, match.group(0), line.strip()[:240]))
                    if len(found) >= limit:
                        return found
    return found
