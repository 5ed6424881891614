"""WedofClient against the real sandbox process over HTTP: paging, errors, retries, throttle."""

import time
from datetime import UTC, date, datetime, timedelta

import pytest

from tests.wedof.conftest import SANDBOX_FOLDERS
from tests.wedof.test_throttle import assert_gcra_bound, run_workers
from wedof.client import WedofClient
from wedof.errors import (
    WedofAuthenticationError,
    WedofNetworkError,
    WedofNotFoundError,
    WedofRateLimitedError,
    WedofServerError,
    WedofValidationError,
)
from wedof.throttle import throttle_key

LIST_ROUTE = "GET /api/registrationFolders"


def make_client(sandbox, **options):
    options.setdefault("backoff_initial", 0.01)
    options.setdefault("backoff_max", 0.05)
    return WedofClient(sandbox.api_url, sandbox.api_key, **options)


def served(sandbox, route):
    return sandbox.control("GET", "/requests")["by_route"].get(route, 0)


def folder_in_state(client, state):
    return next(client.iter_registration_folders(state=state, limit=5))["externalId"]


# -- paging ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("limit", "pages"), [(25, 2), (10, 5), (7, 8), (50, 1), (100, 1)])
def test_paging_covers_every_folder_once_at_exact_boundaries(sandbox, limit, pages):
    with make_client(sandbox) as client:
        seen = list(client.iter_pages(limit=limit, sort="id", order="asc"))
    assert [page for page, _, _ in seen] == list(range(1, pages + 1))
    ids = [folder["externalId"] for _, folders, _ in seen for folder in folders]
    assert len(ids) == SANDBOX_FOLDERS and len(set(ids)) == SANDBOX_FOLDERS
    assert {total for _, _, total in seen} == {SANDBOX_FOLDERS}
    # X-Total-Count is present, so no extra request for an empty page.
    assert served(sandbox, LIST_ROUTE) == pages
    truth = {f["externalId"] for f in sandbox.control("GET", "/truth")}
    assert set(ids) == truth


def test_empty_result_is_one_request_and_no_folder(sandbox):
    future = datetime.now(UTC) + timedelta(days=3650)
    with make_client(sandbox) as client:
        assert list(client.iter_registration_folders(since=future, until=future + timedelta(days=1))) == []
    assert served(sandbox, LIST_ROUTE) == 1


def test_filters_reach_the_sandbox(sandbox):
    truth = sandbox.control("GET", "/truth")
    wanted = {"accepted", "inTraining"}
    expected = {f["externalId"] for f in truth if f["state"] in wanted}
    with make_client(sandbox) as client:
        got = {f["externalId"] for f in client.iter_registration_folders(state=sorted(wanted), limit=10)}
    assert got == expected


def test_time_window_on_last_update(sandbox):
    truth = sandbox.control("GET", "/truth")
    updates = sorted(f["lastUpdate"] for f in truth)
    middle = datetime.fromisoformat(updates[len(updates) // 2].replace("Z", "+00:00")).replace(microsecond=0)
    expected = {f["externalId"] for f in truth if f["lastUpdate"] >= middle.strftime("%Y-%m-%dT%H:%M:%S")}
    with make_client(sandbox) as client:
        got = {
            f["externalId"]
            for f in client.iter_registration_folders(since=middle, sort="lastUpdate", order="asc")
        }
    assert got == expected and 0 < len(got) < SANDBOX_FOLDERS


def test_certification_folders_page_and_load(sandbox):
    with make_client(sandbox) as client:
        certs = list(client.iter_certification_folders(limit=2))
        assert certs, "the seeded sandbox has certification folders"
        assert len({c["externalId"] for c in certs}) == len(certs)
        assert client.get_certification_folder(certs[0]["externalId"]) == certs[0]


# -- each error type ------------------------------------------------------------------------------


def test_wrong_key_is_an_authentication_error_not_retried(sandbox):
    with WedofClient(sandbox.api_url, "wrong-key") as client, pytest.raises(WedofAuthenticationError) as info:
        client.users_me()
    assert info.value.status == 401 and "wrong-key" not in str(info.value)
    assert sandbox.control("GET", "/requests")["unauthorized"] == 1


def test_unknown_folder_is_not_found_and_not_retried(sandbox):
    with make_client(sandbox) as client, pytest.raises(WedofNotFoundError):
        client.get_registration_folder("9999999999")
    assert served(sandbox, "GET /api/registrationFolders/<external_id>") == 1


def test_bad_parameter_is_a_validation_error_with_violations_not_retried(sandbox):
    with make_client(sandbox) as client, pytest.raises(WedofValidationError) as info:
        list(client.iter_registration_folders(state="noSuchState"))
    assert info.value.violations and info.value.violations[0]["propertyPath"] == "state"
    assert served(sandbox, LIST_ROUTE) == 1


def test_transition_refused_by_the_state_machine(sandbox):
    with make_client(sandbox) as client:
        external_id = folder_in_state(client, "notProcessed")
        with pytest.raises(WedofValidationError) as info:
            client.terminate(external_id, code="8")
        assert {"propertyPath": "state"}.items() <= info.value.violations[0].items()
        assert external_id in info.value.detail
        assert client.get_registration_folder(external_id)["state"] == "notProcessed"
    assert served(sandbox, "POST /api/registrationFolders/<external_id>/<verb>") == 1


def test_persistent_5xx_retries_up_to_max_attempts(sandbox):
    sandbox.control("PUT", "/faults", json={"error_rate": 1.0})
    with make_client(sandbox, max_attempts=3) as client, pytest.raises(WedofServerError) as info:
        client.users_me()
    assert info.value.transient
    assert sandbox.control("GET", "/requests")["faults"]["error"] == 3


def test_max_attempts_one_sends_exactly_one_request(sandbox):
    sandbox.control("PUT", "/faults", json={"error_rate": 1.0})
    with make_client(sandbox, max_attempts=1) as client, pytest.raises(WedofServerError):
        client.users_me()
    assert sandbox.control("GET", "/requests")["total"] == 1


def test_5xx_on_a_transition_is_not_resent(sandbox):
    with make_client(sandbox) as client:
        external_id = folder_in_state(client, "accepted")
        sandbox.control("PUT", "/faults", json={"error_rate": 1.0})
        with pytest.raises(WedofServerError):
            client.in_training(external_id)
    assert sandbox.control("GET", "/requests")["total"] == 2  # the listing, then one POST


def test_intermittent_faults_are_ridden_out(sandbox):
    sandbox.control("PUT", "/faults", json={"error_rate": 0.3, "drop_rate": 0.1})
    with make_client(sandbox, max_attempts=25) as client:
        ids = [f["externalId"] for f in client.iter_registration_folders(limit=10)]
    assert len(set(ids)) == SANDBOX_FOLDERS
    counters = sandbox.control("GET", "/requests")
    assert counters["faults"]["error"] + counters["faults"]["drop"] > 0  # retries really happened


def test_dropped_connections_become_network_errors(sandbox):
    sandbox.control("PUT", "/faults", json={"drop_rate": 1.0})
    with make_client(sandbox, max_attempts=2) as client, pytest.raises(WedofNetworkError) as info:
        client.users_me()
    assert info.value.transient
    assert sandbox.control("GET", "/requests")["faults"]["drop"] == 2


def test_429_waits_at_least_retry_after_before_the_retry(sandbox):
    sandbox.control("PUT", "/faults", json={"rate_limit_rate": 1.0, "retry_after": 1})
    answered = []
    with make_client(sandbox, max_attempts=2) as client:
        client.session.hooks["response"].append(lambda response, **_: answered.append(time.monotonic()))
        with pytest.raises(WedofRateLimitedError) as info:
            client.users_me()
    assert info.value.retry_after == 1.0
    assert len(answered) == 2
    assert answered[1] - answered[0] >= 1.0


def test_429_then_success(sandbox):
    sandbox.control("PUT", "/faults", json={"rate_limit_rate": 0.5, "retry_after": 0})
    with make_client(sandbox, max_attempts=30) as client:
        for _ in range(5):
            assert client.users_me()["email"]
    assert sandbox.control("GET", "/requests")["faults"]["rate_limit"] > 0


def test_retry_after_above_the_cap_is_handed_back_at_once(sandbox):
    sandbox.control("PUT", "/faults", json={"rate_limit_rate": 1.0, "retry_after": 120})
    with make_client(sandbox, retry_after_cap=30) as client, pytest.raises(WedofRateLimitedError) as info:
        client.users_me()
    assert info.value.retry_after == 120.0
    assert sandbox.control("GET", "/requests")["total"] == 1


# -- writes ---------------------------------------------------------------------------------------


def test_lifecycle_of_a_folder_through_the_client(sandbox):
    with make_client(sandbox) as client:
        external_id = folder_in_state(client, "accepted")
        info = client.get_registration_folder(external_id)["trainingActionInfo"]
        # Wedof checks the dates: the entry on or after the session start, the end not after its end.
        assert client.in_training(external_id, date=info["sessionStartDate"][:10])["state"] == "inTraining"
        assert client.update_registration_folder(external_id, completion_rate=0)["completionRate"] == 0
        updated = client.update_registration_folder(external_id, completion_rate=100, tags=["bdc"], notes="")
        assert (updated["completionRate"], updated["tags"], updated["notes"]) == (100, ["bdc"], "")
        code = client.registration_folder_reasons("terminated")[0]["code"]
        ended = min(info["sessionEndDate"][:10], date.today().isoformat())
        assert client.terminate(external_id, date=ended, code=code, absence_duration=0)["state"] == "terminated"
        done = client.service_done(external_id, date=ended, code=code, absence_duration=0,
                                   force_majeure_absence=False, training_duration=info["indicativeDuration"])
        # Declared is not billable yet: Wedof waits for the financer to validate the service.
        assert (done["state"], done["billingState"]) == ("serviceDoneDeclared", "notBillable")
        with pytest.raises(WedofValidationError):
            client.billing(external_id, "F-2025-001")
        sandbox.control("POST", f"/folders/{external_id}/moves/serviceDoneValidated")  # the financer validates
        assert client.get_registration_folder(external_id)["billingState"] == "toBill"
        billed = client.billing(external_id, "F-2025-001")
        assert (billed["billingState"], billed["billNumber"]) == ("billed", "F-2025-001")
        with pytest.raises(WedofValidationError):  # billing twice is refused, not applied twice
            client.billing(external_id, "F-2025-002")
        assert sandbox.control("GET", "/transitions")[external_id]["billing"] == 1
        assert client.list_payments(external_id) == []
        sandbox.control("POST", f"/folders/{external_id}/moves/paid")  # the financer pays
        [payment] = client.list_payments(external_id, type="bill", state="issued")
        assert (payment["externalId"], payment["billNumber"], payment["amount"]) == (
            external_id, "F-2025-001", billed["amountToInvoice"])
        assert client.list_payments(external_id, type="deposit") == []
        assert isinstance(client.list_folder_files(external_id), list)


def test_payments_of_seeded_paid_folders(sandbox):
    truth = sandbox.control("GET", "/truth")
    paid = [f for f in truth if f["billingState"] == "paid"]
    unpaid = next(f for f in truth if f["billingState"] == "billed")
    assert paid
    with make_client(sandbox) as client:
        for folder in paid:
            [payment] = client.list_payments(folder["externalId"], limit=1)
            assert payment["billNumber"] == folder["billNumber"]
            assert payment["transactionDate"] == folder["history"]["paidDate"]
        assert client.list_payments(unpaid["externalId"]) == []
        with pytest.raises(WedofValidationError):  # the sandbox caps the page size at 100
            client.list_payments(unpaid["externalId"], limit=101)
    assert served(sandbox, "GET /api/payments") == len(paid) + 2


def test_refuse_and_cancel(sandbox):
    with make_client(sandbox) as client:
        first, second = [
            f["externalId"] for f in client.iter_registration_folders(state="notProcessed", limit=2)
        ][:2]
        assert client.refuse(first, client.registration_folder_reasons("refused")[0]["code"])[
            "state"
        ].startswith("refused")
        client.validate(second, indicativeDuration=24, weeklyDuration=3)
        assert client.get_registration_folder(second)["state"] in ("validated", "waitingAcceptation")
        cancelled = client.cancel(second, client.registration_folder_reasons("canceled")[0]["code"])
        assert cancelled["state"].startswith("canceled")


def test_webhook_create_and_delete(sandbox):
    with make_client(sandbox) as client:
        hook = client.create_webhook("http://127.0.0.1:9/hook", ["registrationFolder.updated"], "s3cr3t")
        assert isinstance(hook["id"], int)
        assert any(h["id"] == hook["id"] for h in sandbox.control("GET", "/webhooks"))
        client.delete_webhook(hook["id"])
        assert not any(h["id"] == hook["id"] for h in sandbox.control("GET", "/webhooks"))
        with pytest.raises(WedofNotFoundError):
            client.delete_webhook(hook["id"])


def test_organism_and_user(sandbox):
    with make_client(sandbox) as client:
        assert client.users_me()["email"]
        assert client.organisms_me()["siret"]


# -- shared throttle across processes -------------------------------------------------------------


def test_throttle_holds_across_two_processes_calling_the_sandbox(sandbox, redis_url, redis_client):
    rate, burst, seconds = 20, 2, 1.5
    per_process = run_workers(
        redis_url,
        throttle_key("sandbox-two-procs"),
        rate,
        burst,
        seconds,
        count=2,
        extra=(sandbox.api_url, sandbox.api_key),
    )
    grants = [t for grants in per_process for t in grants]
    assert all(per_process)
    # Every grant was one real request, and the sandbox saw exactly those.
    assert served(sandbox, "GET /api/users/me") == len(grants)
    assert len(grants) <= rate * (max(grants) - min(grants)) + burst + 1e-6
    assert_gcra_bound(grants, rate, burst)
