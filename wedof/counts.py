"""What Wedof lists for an organism, counted cheaply: one ``limit=1`` listing per state and billing state.

Every count is Wedof's ``X-Total-Count`` header (wedof-api.md §3, medium confidence). Without it the
counts are unavailable (:class:`CountsUnavailable`): downloading every folder to count them is what
this check exists to avoid, and a guessed number would report a drift that is not there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from wedof.client import WedofClient
from wedof.errors import WedofProtocolError
from wedof.mapping.states import BILLING_STATES, FOLDER_STATES
from wedof.mapping.values import datetime_utc

# No organism holds this many folders: a larger count is a broken answer, not a fact to compare.
MAX_PLAUSIBLE_COUNT = 100_000_000


class CountsUnavailable(Exception):
    """Wedof's listing does not tell its counts (no ``X-Total-Count``); the message says where."""


@dataclass(frozen=True)
class ListingCounts:
    total: int
    states: dict[str, int]  # every state of FOLDER_STATES
    billing: dict[str, int]  # every billing state of BILLING_STATES
    newest_update: datetime | None  # the newest folder's lastUpdate (None: no folder, or unreadable)
    requests: int  # listings read


def read_counts(client: WedofClient) -> ListingCounts:
    """Wedof's counts by state and billing state, its total and its newest ``lastUpdate``.

    Raises :class:`CountsUnavailable` (no header), :class:`WedofProtocolError` (an unreadable or
    implausible count) or any other :class:`wedof.errors.WedofError` of the calls.
    """
    requests = 0

    def count(what: str, **filters) -> int:
        nonlocal requests
        requests += 1
        value = client.count_registration_folders(**filters)
        if value is None:
            raise CountsUnavailable(f"Wedof sent no X-Total-Count header for registrationFolders {what}: the counts "
                                    "cannot be read from the listing, and are not guessed")
        if value > MAX_PLAUSIBLE_COUNT:
            raise WedofProtocolError(f"X-Total-Count {value} for registrationFolders {what} is not plausible",
                                     method="GET", path="/registrationFolders")
        return value

    total = count("(all)")
    states = {state: count(f"state={state}", state=state) for state in FOLDER_STATES}
    billing = {name: count(f"billingState={name}", billing_state=name) for name in BILLING_STATES}
    requests += 1
    newest = None
    for _page, folders, _total in client.iter_pages(sort="lastUpdate", order="desc", limit=1):
        newest = datetime_utc(folders[0].get("lastUpdate")) if folders else None
        break
    return ListingCounts(total=total, states=states, billing=billing, newest_update=newest, requests=requests)
