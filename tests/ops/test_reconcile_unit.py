"""Fast unit tests of the reconciliation's parts: the client's count, Wedof's counts, the comparison.

Canned HTTP answers (``responses``) pin what a count is and what is refused; the whole report against
the sandbox over HTTP with a real worker is in ``test_reconcile.py``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import responses
from responses import matchers

from bdc.models import ReportStatus
from wedof.client import WedofClient
from wedof.counts import MAX_PLAUSIBLE_COUNT, CountsUnavailable, ListingCounts, read_counts
from wedof.errors import WedofProtocolError, WedofServerError
from wedof.mapping.states import BILLING_STATES, FOLDER_STATES
from worker.reconcile import OTHER, LocalCounts, compare

BASE = "http://127.0.0.1:9/api"
FOLDERS = f"{BASE}/registrationFolders"


@pytest.fixture
def client():
    with WedofClient(BASE, "unit-key", max_attempts=1) as c:
        yield c


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def test_a_count_is_the_total_header_of_a_one_folder_listing(client, rsps):
    rsps.get(FOLDERS, json=[{"externalId": "1234567890"}], headers={"X-Total-Count": " 42 "},
             match=[matchers.query_param_matcher({"state": "inTraining", "page": "1", "limit": "1"})])
    assert client.count_registration_folders(state="inTraining") == 42
    rsps.get(FOLDERS, json=[], headers={"X-Total-Count": "0"},
             match=[matchers.query_param_matcher({"billingState": "toBill", "page": "1", "limit": "1"})])
    assert client.count_registration_folders(billing_state="toBill") == 0


def test_no_total_header_is_none_never_a_count_of_the_page(client, rsps):
    rsps.get(FOLDERS, json=[{"externalId": "1234567890"}])
    assert client.count_registration_folders(state="accepted") is None


@pytest.mark.parametrize("header", ["-1", "1e3", "4.0", "lots", "", "²", "١٢", "12 13", "9" * 13, "0x10"])
def test_a_total_header_that_is_not_a_count_is_a_protocol_error(client, rsps, header):
    rsps.get(FOLDERS, json=[], headers={"X-Total-Count": header})
    with pytest.raises(WedofProtocolError, match="is not a count"):
        client.count_registration_folders()


def test_count_refuses_paging_arguments(client):
    with pytest.raises(ValueError, match="limit"):
        client.count_registration_folders(limit=5)


def _listing(rsps, counts: dict, newest: str | None = "2025-11-30T10:00:00.000Z", total: int | None = None,
             drop_header_for: str | None = None):
    """Answers of a Wedof whose folders are counted by ``counts`` ({"state=x": n, "billingState=y": n})."""
    def answer(request):
        query = request.params
        if "sort" in query:  # the newest-folder read
            body = [] if newest is None else [{"externalId": "1234567890", "lastUpdate": newest}]
            return 200, {"X-Total-Count": str(total or 0)}, json.dumps(body)
        key = next((f"{name}={query[name]}" for name in ("state", "billingState") if name in query), "all")
        headers = {} if key == drop_header_for else {"X-Total-Count": str(counts.get(key, total or 0))}
        return 200, headers, "[]"
    rsps.add_callback(responses.GET, FOLDERS, callback=answer)


def test_wedof_counts_read_every_state_and_billing_state(client, rsps):
    _listing(rsps, {"state=inTraining": 3, "state=accepted": 2, "billingState=notBillable": 5}, total=5)
    counts = read_counts(client)
    assert counts.total == 5 and counts.states["inTraining"] == 3 and counts.states["accepted"] == 2
    assert set(counts.states) == set(FOLDER_STATES) and set(counts.billing) == set(BILLING_STATES)
    assert counts.newest_update == datetime(2025, 11, 30, 10, tzinfo=UTC)
    assert counts.requests == 1 + len(FOLDER_STATES) + len(BILLING_STATES) + 1 == len(rsps.calls)


def test_one_missing_header_makes_the_counts_unavailable(client, rsps):
    _listing(rsps, {}, total=5, drop_header_for="state=terminated")
    with pytest.raises(CountsUnavailable, match="no X-Total-Count header for registrationFolders state=terminated"):
        read_counts(client)


def test_an_implausible_count_is_refused(client, rsps):
    _listing(rsps, {"all": MAX_PLAUSIBLE_COUNT + 1})
    with pytest.raises(WedofProtocolError, match="not plausible"):
        read_counts(client)


def test_a_5xx_is_raised_to_the_report(client, rsps):
    rsps.get(FOLDERS, status=503, json={"detail": "down"})
    with pytest.raises(WedofServerError):
        read_counts(client)


def test_an_empty_organism_has_no_newest_folder(client, rsps):
    _listing(rsps, {}, newest=None, total=0)
    assert read_counts(client).newest_update is None


# -- the comparison ----------------------------------------------------------------------------------------

def wedof(states: dict, billing: dict, total: int | None = None, newest=None) -> ListingCounts:
    return ListingCounts(total=sum(states.values()) if total is None else total, states=states, billing=billing,
                         newest_update=newest, requests=24)


T1, T2 = datetime(2025, 11, 1, tzinfo=UTC), datetime(2025, 11, 2, tzinfo=UTC)


def test_agreeing_counts_are_ok_with_every_state_listed():
    result = compare(wedof({"inTraining": 2}, {"notBillable": 2}, newest=T1),
                     LocalCounts(2, {"inTraining": 2}, {"notBillable": 2}, T1))
    assert result.status == ReportStatus.OK and result.drift == 0 and not result.behind
    assert set(result.wedof_states) == set(FOLDER_STATES) and result.wedof_states == result.local_states
    assert OTHER not in result.wedof_states


def test_drift_is_the_sum_of_absolute_differences_of_both_maps():
    # One folder moved inTraining -> terminated at Wedof without a webhook, one is missing here.
    result = compare(wedof({"inTraining": 1, "terminated": 2}, {"notBillable": 3}, newest=T2),
                     LocalCounts(2, {"inTraining": 2}, {"notBillable": 2}, T1))
    assert result.status == ReportStatus.DRIFT and result.behind
    assert (result.details["state_drift"], result.details["billing_drift"], result.drift) == (3, 1, 4)
    assert result.details["differences"] == {"states": {"inTraining": -1, "terminated": 2},
                                             "billing": {"notBillable": 1}}


def test_states_nobody_lists_are_compared_as_other():
    # Wedof's total holds a folder in a state we do not know; ours stored it verbatim (and one with none).
    result = compare(wedof({"accepted": 1}, {"notBillable": 1}, total=3, newest=T1),
                     LocalCounts(3, {"accepted": 1, "brandNewState": 1, None: 1},
                                 {"notBillable": 1, None: 2}, T1))
    assert result.wedof_states[OTHER] == 2 and result.local_states[OTHER] == 2
    assert result.wedof_billing[OTHER] == 2 and result.local_billing[OTHER] == 2
    assert result.drift == 0 and result.status == ReportStatus.OK


def test_newer_changes_at_wedof_are_a_drift_even_with_equal_counts():
    result = compare(wedof({"accepted": 1}, {"notBillable": 1}, newest=T2), LocalCounts(1, {"accepted": 1},
                                                                                       {"notBillable": 1}, T1))
    assert result.drift == 0 and result.behind and result.status == ReportStatus.DRIFT
    ours_newer = compare(wedof({"accepted": 1}, {"notBillable": 1}, newest=T1),
                         LocalCounts(1, {"accepted": 1}, {"notBillable": 1}, T2))
    assert ours_newer.status == ReportStatus.OK
