"""Fast unit tests of WedofClient against canned HTTP answers (``responses``).

They pin the error mapping, paging stop rules and request shapes; the same behaviours are
checked against the real sandbox over HTTP in ``test_client_sandbox.py``.
"""

import json
import logging
from datetime import UTC, datetime, timedelta, timezone

import pytest
import requests
import responses
from responses import matchers

from wedof.client import WedofClient, format_wedof_datetime, path_id
from wedof.errors import (
    WedofAuthenticationError,
    WedofError,
    WedofForbiddenError,
    WedofNetworkError,
    WedofNotFoundError,
    WedofProtocolError,
    WedofRateLimitedError,
    WedofServerError,
    WedofValidationError,
)
from wedof.samples import certification_folder_sample, registration_folder_sample, sample_bytes

BASE = "http://127.0.0.1:9/api"
KEY = "unit-test-api-key-0123456789"
FOLDERS = f"{BASE}/registrationFolders"


def folders(start, count):
    return [{"externalId": str(1000000000 + i), "state": "accepted"} for i in range(start, start + count)]


@pytest.fixture
def client():
    with WedofClient(BASE, KEY, max_attempts=3, backoff_initial=0.01, backoff_max=0.02) as c:
        yield c


@pytest.fixture
def mocked():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


# -- request shape --------------------------------------------------------------------------------


def test_every_call_sends_key_json_headers_and_a_timeout(client, mocked):
    mocked.get(f"{BASE}/users/me", json={"email": "a@b.fr"})
    assert client.users_me() == {"email": "a@b.fr"}
    call = mocked.calls[0]
    assert call.request.headers["X-Api-Key"] == KEY
    assert call.request.headers["Accept"] == "application/json"
    assert call.request.headers["Content-Type"] == "application/json"
    assert call.request.headers["User-Agent"] == "bdc-wedof-sync"
    assert call.request.req_kwargs["timeout"] == (3.05, 20)


def test_key_never_appears_in_repr_or_logs(client, mocked, caplog):
    caplog.set_level(logging.DEBUG)
    mocked.get(f"{BASE}/users/me", status=401, json={"detail": f"key {KEY} is revoked"})
    with pytest.raises(WedofAuthenticationError) as info:
        client.users_me()
    assert KEY not in repr(client)
    assert KEY not in str(info.value) and KEY not in (info.value.body_excerpt or "")
    assert KEY not in caplog.text


@pytest.mark.parametrize("bad", ["", "   ", None, "key\r\nX-Evil: 1"])
def test_client_refuses_a_missing_or_hostile_key(bad):
    with pytest.raises(ValueError):
        WedofClient(BASE, bad)


@pytest.mark.parametrize("bad", ["", "www.wedof.fr/api", "ftp://x/api", "http://"])
def test_client_refuses_a_bad_base_url(bad):
    with pytest.raises(ValueError):
        WedofClient(bad, KEY)


# -- paging ---------------------------------------------------------------------------------------


def test_without_total_count_a_short_page_stops_paging(client, mocked):
    for page, items in ((1, folders(0, 10)), (2, folders(10, 10)), (3, folders(20, 3))):
        mocked.get(
            FOLDERS, json=items, match=[matchers.query_param_matcher({"page": str(page), "limit": "10"})]
        )
    got = [f["externalId"] for f in client.iter_registration_folders(limit=10)]
    assert len(got) == 23 and len(set(got)) == 23
    assert len(mocked.calls) == 3


def test_without_total_count_an_exact_multiple_ends_on_an_empty_page(client, mocked):
    for page, items in ((1, folders(0, 5)), (2, folders(5, 5)), (3, [])):
        mocked.get(
            FOLDERS, json=items, match=[matchers.query_param_matcher({"page": str(page), "limit": "5"})]
        )
    pages = list(client.iter_pages(limit=5))
    assert [(p, len(items), total) for p, items, total in pages] == [(1, 5, None), (2, 5, None)]
    assert len(mocked.calls) == 3


def test_total_count_stops_without_asking_for_an_empty_page(client, mocked):
    for page in (1, 2):
        mocked.get(
            FOLDERS,
            json=folders((page - 1) * 5, 5),
            headers={"X-Total-Count": "10"},
            match=[matchers.query_param_matcher({"page": str(page), "limit": "5"})],
        )
    pages = list(client.iter_pages(limit=5))
    assert [(p, len(items), total) for p, items, total in pages] == [(1, 5, 10), (2, 5, 10)]
    assert len(mocked.calls) == 2


def test_server_capping_the_page_size_does_not_end_paging_early(client, mocked):
    # We ask for 10, the server serves 4 per page and says so in X-Item-Per-Page.
    for page, items in ((1, folders(0, 4)), (2, folders(4, 4)), (3, folders(8, 1))):
        mocked.get(
            FOLDERS,
            json=items,
            headers={"X-Item-Per-Page": "4"},
            match=[matchers.query_param_matcher({"page": str(page), "limit": "10"})],
        )
    assert len(list(client.iter_registration_folders(limit=10))) == 9


@pytest.mark.parametrize("header", ["abc", "-3", "", "1e9"])
def test_unreadable_total_count_falls_back_to_short_page_rule(client, mocked, header):
    mocked.get(FOLDERS, json=folders(0, 2), headers={"X-Total-Count": header})
    assert len(list(client.iter_registration_folders(limit=5))) == 2
    assert len(mocked.calls) == 1


def test_server_ignoring_page_is_detected_instead_of_looping(client, mocked):
    mocked.get(FOLDERS, json=folders(0, 3))  # same full page whatever the page number
    with pytest.raises(WedofProtocolError):
        list(client.iter_registration_folders(limit=3))
    assert len(mocked.calls) == 2


@pytest.mark.parametrize(
    "body",
    [{"data": [], "meta": {}}, "[1, 2]", "not json", '[{"externalId": "1"}, 5]', "null", '"text"'],
)
def test_list_that_is_not_a_list_of_objects_is_a_protocol_error(client, mocked, body):
    mocked.get(FOLDERS, body=json.dumps(body) if isinstance(body, dict) else body)
    with pytest.raises(WedofProtocolError):
        list(client.iter_registration_folders())


def test_paging_streams_one_page_at_a_time(client, mocked):
    for page in (1, 2):
        mocked.get(
            FOLDERS,
            json=folders((page - 1) * 2, 2),
            match=[matchers.query_param_matcher({"page": str(page), "limit": "2"})],
        )
    mocked.get(FOLDERS, json=[], match=[matchers.query_param_matcher({"page": "3", "limit": "2"})])
    iterator = client.iter_registration_folders(limit=2)
    next(iterator)
    assert len(mocked.calls) == 1  # the second page is not fetched before it is needed
    assert len(list(iterator)) == 3
    assert len(mocked.calls) == 3


def test_filters_and_time_window_are_sent_in_wedof_form(client, mocked):
    mocked.get(FOLDERS, json=[])
    since = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=timezone(timedelta(hours=2)))
    until = datetime(2025, 2, 1, tzinfo=UTC)
    list(
        client.iter_registration_folders(
            state=["validated", "accepted"],
            type="cpf",
            billing_state="toBill",
            sort="lastUpdate",
            order="asc",
            since=since,
            until=until,
            limit=25,
            tags=["a", "b"],
            controlState=None,
        )
    )
    sent = mocked.calls[0].request.params
    assert sent == {
        "state": "validated,accepted",
        "type": "cpf",
        "billingState": "toBill",
        "sort": "lastUpdate",
        "order": "asc",
        "period": "custom",
        "since": "2025-01-02T01:04:05Z",
        "until": "2025-02-01T00:00:00Z",
        "filterOnStateDate": "lastUpdate",
        "tags": "a,b",
        "page": "1",
        "limit": "25",
    }


def test_since_alone_closes_the_window_at_now(client, mocked):
    mocked.get(FOLDERS, json=[])
    list(client.iter_registration_folders(since=datetime.now(UTC) - timedelta(hours=1)))
    sent = mocked.calls[0].request.params
    assert sent["period"] == "custom" and sent["until"].endswith("Z")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"since": datetime(2025, 1, 1)},  # naive: ambiguous
        {"since": datetime(2025, 2, 1, tzinfo=UTC), "until": datetime(2025, 1, 1, tzinfo=UTC)},
        {"since": "2025-01-01"},
        {"limit": 0},
        {"limit": "100"},
        {"page": 2},
        {"order": "sideways"},
    ],
)
def test_bad_list_arguments_fail_before_any_request(client, mocked, kwargs):
    with pytest.raises(ValueError):
        client.iter_pages(**kwargs)
    assert len(mocked.calls) == 0


def test_format_wedof_datetime():
    assert (
        format_wedof_datetime(datetime(2025, 3, 15, 14, 26, 51, 842000, tzinfo=UTC)) == "2025-03-15T14:26:51Z"
    )


# -- errors and retries ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, WedofValidationError),
        (401, WedofAuthenticationError),
        (403, WedofForbiddenError),
        (404, WedofNotFoundError),
        (409, WedofValidationError),
        (422, WedofValidationError),
    ],
)
def test_4xx_maps_to_its_error_and_is_never_retried(client, mocked, status, cls):
    mocked.get(f"{FOLDERS}/4270885603", status=status, json={"detail": "nope", "violations": []})
    with pytest.raises(cls) as info:
        client.get_registration_folder("4270885603")
    assert info.value.status == status and info.value.detail == "nope"
    assert len(mocked.calls) == 1


def test_5xx_on_get_is_retried_then_succeeds(client, mocked):
    url = f"{FOLDERS}/4270885603"
    mocked.get(url, status=503, body="upstream down")
    mocked.get(url, status=502, body="<html>bad gateway</html>")
    mocked.get(url, json={"externalId": "4270885603"})
    assert client.get_registration_folder("4270885603")["externalId"] == "4270885603"
    assert len(mocked.calls) == 3


def test_5xx_exhausting_attempts_raises_server_error(client, mocked):
    mocked.get(f"{BASE}/users/me", status=500, json={"detail": "boom"})
    with pytest.raises(WedofServerError) as info:
        client.users_me()
    assert info.value.transient and len(mocked.calls) == 3


def test_max_attempts_one_disables_retries(mocked):
    mocked.get(f"{BASE}/users/me", status=503)
    with WedofClient(BASE, KEY, max_attempts=1) as c, pytest.raises(WedofServerError):
        c.users_me()
    assert len(mocked.calls) == 1


def test_5xx_on_a_transition_is_not_resent(client, mocked):
    # Wedof may have applied it; resending could bill twice. The caller re-reads the folder.
    mocked.post(f"{FOLDERS}/4270885603/billing", status=500)
    with pytest.raises(WedofServerError):
        client.billing("4270885603", "F-2025-001")
    assert len(mocked.calls) == 1


def test_429_is_retried_on_any_method_after_retry_after(client, mocked):
    url = f"{FOLDERS}/4270885603/inTraining"
    mocked.post(url, status=429, headers={"Retry-After": "0"})
    mocked.post(url, json={"externalId": "4270885603", "state": "inTraining"})
    assert client.in_training("4270885603")["state"] == "inTraining"
    assert len(mocked.calls) == 2


def test_retry_after_above_the_cap_goes_back_to_the_caller(mocked):
    mocked.get(f"{BASE}/users/me", status=429, headers={"Retry-After": "120"})
    with WedofClient(BASE, KEY, retry_after_cap=30) as c, pytest.raises(WedofRateLimitedError) as info:
        c.users_me()
    assert info.value.retry_after == 120.0 and info.value.transient
    assert len(mocked.calls) == 1


def test_connection_errors_become_network_errors_after_retries(client, mocked):
    mocked.get(f"{BASE}/users/me", body=requests.ConnectionError("reset by peer"))
    with pytest.raises(WedofNetworkError) as info:
        client.users_me()
    assert info.value.transient and len(mocked.calls) == 3


def test_read_timeout_on_a_transition_is_not_resent(client, mocked):
    mocked.post(f"{FOLDERS}/1/terminate", body=requests.ReadTimeout("slow"))
    with pytest.raises(WedofNetworkError) as info:
        client.terminate("1")
    assert info.value.not_sent is False and len(mocked.calls) == 1


def test_refused_connection_is_retried_even_for_a_transition():
    # Nothing listens on port 9 of loopback: the request cannot have reached anyone.
    with (
        WedofClient(BASE, KEY, max_attempts=2, backoff_initial=0.01) as c,
        pytest.raises(WedofNetworkError) as info,
    ):
        c.terminate("1")
    assert info.value.not_sent is True


def test_redirects_are_not_followed(client, mocked):
    mocked.get(f"{BASE}/users/me", status=302, headers={"Location": "http://127.0.0.2/steal"})
    with pytest.raises(WedofProtocolError):
        client.users_me()
    assert len(mocked.calls) == 1


@pytest.mark.parametrize("body", ["", "<html>maintenance</html>", "[]", "[{}]", "123"])
def test_object_endpoint_with_a_wrong_body_is_a_protocol_error(client, mocked, body):
    mocked.get(f"{FOLDERS}/1", body=body, status=200)
    with pytest.raises(WedofProtocolError) as info:
        client.get_registration_folder("1")
    assert not info.value.transient


def test_transition_refused_by_the_state_machine_carries_violations(client, mocked):
    mocked.post(
        f"{FOLDERS}/1/terminate",
        status=400,
        json={
            "detail": "Cannot terminate",
            "violations": [{"propertyPath": "state", "title": "is notProcessed"}],
        },
    )
    with pytest.raises(WedofValidationError) as info:
        client.terminate("1", date="2025-01-31")
    assert info.value.violations == [{"propertyPath": "state", "title": "is notProcessed"}]
    assert json.loads(mocked.calls[0].request.body) == {"date": "2025-01-31"}


# -- bodies of writes -----------------------------------------------------------------------------


def test_update_sends_only_given_fields_and_keeps_zero(client, mocked):
    mocked.put(f"{FOLDERS}/1", json={"externalId": "1"})
    client.update_registration_folder("1", completion_rate=0, notes="")
    assert json.loads(mocked.calls[0].request.body) == {"completionRate": 0, "notes": ""}


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"completion_rate": 101},
        {"completion_rate": -1},
        {"completion_rate": True},
        {"completion_rate": 50.5},
        {"tags": "bdc"},
    ],
)
def test_update_refuses_bad_values_before_sending(client, mocked, kwargs):
    with pytest.raises(ValueError):
        client.update_registration_folder("1", **kwargs)
    assert len(mocked.calls) == 0


def test_transition_bodies(client, mocked):
    for verb in ("validate", "inTraining", "terminate", "serviceDone", "refuse", "cancel", "billing"):
        mocked.post(f"{FOLDERS}/1/{verb}", json={"externalId": "1"})
    client.validate("1", indicativeDuration=24)
    client.in_training("1", date=datetime(2025, 1, 20, 9, tzinfo=UTC))
    client.terminate("1", date="2025-03-01", code=8, absence_duration=0)
    client.service_done("1", force_majeure_absence=False, training_duration=24)
    client.refuse("1", code="R1", description="full")
    client.cancel("1", code="C1")
    client.billing("1", "F-1", vat_rate=20)
    bodies = [json.loads(c.request.body) for c in mocked.calls]
    assert bodies == [
        {"indicativeDuration": 24},
        {"date": "2025-01-20"},
        {"date": "2025-03-01", "code": 8, "absenceDuration": 0},
        {"forceMajeureAbsence": False, "trainingDuration": 24},
        {"code": "R1", "description": "full"},
        {"code": "C1"},
        {"billNumber": "F-1", "vatRate": 20},
    ]


@pytest.mark.parametrize("bad_date", ["31/01/2025", "2025-1-1", "tomorrow", 20250101])
def test_transition_refuses_a_bad_date(client, mocked, bad_date):
    with pytest.raises(ValueError):
        client.in_training("1", date=bad_date)
    assert len(mocked.calls) == 0


def test_reasons_webhooks_files_and_organism(client, mocked):
    mocked.get(
        f"{BASE}/registrationFoldersReasons",
        json=[{"code": "8", "label": "Fin"}],
        match=[matchers.query_param_matcher({"type": "terminated"})],
    )
    mocked.post(f"{BASE}/webhooks", status=201, json={"id": 42, "url": "http://127.0.0.1/h"})
    mocked.delete(f"{BASE}/webhooks/42", status=204)
    mocked.get(f"{FOLDERS}/1/files", json=[{"id": 1, "typeId": 2, "name": "a.pdf"}])
    mocked.get(f"{BASE}/organisms/me", json={"siret": "12345678900012"})
    assert client.registration_folder_reasons("terminated") == [{"code": "8", "label": "Fin"}]
    assert client.create_webhook("http://127.0.0.1/h", ["registrationFolder.updated"], "s")["id"] == 42
    assert json.loads(mocked.calls[1].request.body) == {
        "url": "http://127.0.0.1/h",
        "events": ["registrationFolder.updated"],
        "name": "bdc-wedof-sync",
        "secret": "s",
        "enabled": True,
        "ignoreSsl": False,
    }
    assert client.delete_webhook(42) is None
    assert client.list_folder_files("1")[0]["name"] == "a.pdf"
    assert client.organisms_me()["siret"] == "12345678900012"
    with pytest.raises(ValueError):
        client.registration_folder_reasons("accepted")


def test_created_webhook_without_id_is_a_protocol_error(client, mocked):
    mocked.post(f"{BASE}/webhooks", status=201, json={"url": "x"})
    with pytest.raises(WedofProtocolError):
        client.create_webhook("http://127.0.0.1/h", ["registrationFolder.updated"], None)


@pytest.mark.parametrize("kwargs", [{"url": "not a url"}, {"events": []}, {"events": [""]}])
def test_create_webhook_refuses_bad_arguments(client, mocked, kwargs):
    args = {"url": "http://127.0.0.1/h", "events": ["registrationFolder.updated"], "secret": "s", **kwargs}
    with pytest.raises(ValueError):
        client.create_webhook(**args)


# -- hostile identifiers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hostile",
    [
        "../users/me",
        "..",
        ".",
        "a/b",
        "a\\b",
        "",
        " 1",
        "1 ",
        "1?x=1",
        "1#frag",
        "%2e%2e",
        "1\n2",
        "é123",
        "x" * 200,
        None,
        True,
        1.5,
        ["1"],
        "..%2f",
    ],
)
def test_hostile_external_ids_never_reach_the_network(client, mocked, hostile):
    for call in (
        client.get_registration_folder,
        client.list_folder_files,
        client.get_certification_folder,
        client.in_training,
        client.delete_webhook,
    ):
        with pytest.raises(ValueError):
            call(hostile)
    assert len(mocked.calls) == 0


def test_path_id_accepts_real_identifiers():
    assert path_id("4270885603") == "4270885603"
    assert path_id("1234-1234567890") == "1234-1234567890"
    assert path_id(42) == "42"


# -- real samples ---------------------------------------------------------------------------------


def test_real_samples_load_through_the_client(client, mocked):
    folder, cert = registration_folder_sample(), certification_folder_sample()
    mocked.get(
        f"{FOLDERS}/{folder['externalId']}",
        body=sample_bytes("registration-folder.activepieces-sample.json"),
        content_type="application/json",
    )
    mocked.get(
        f"{BASE}/certificationFolders/{cert['externalId']}",
        body=sample_bytes("certification-folder.activepieces-sample.json"),
        content_type="application/json",
    )
    mocked.get(FOLDERS, json=[folder], headers={"X-Total-Count": "1"})
    assert client.get_registration_folder(folder["externalId"]) == folder
    assert client.get_certification_folder(cert["externalId"]) == cert
    assert list(client.iter_registration_folders()) == [folder]


def test_all_typed_errors_share_the_base_class():
    for cls in (
        WedofAuthenticationError,
        WedofForbiddenError,
        WedofNotFoundError,
        WedofValidationError,
        WedofRateLimitedError,
        WedofServerError,
        WedofNetworkError,
        WedofProtocolError,
    ):
        assert issubclass(cls, WedofError)


def test_total_count_larger_than_reality_stops_on_the_empty_page(client, mocked):
    # The list shrank during the sync: the header promised 12, the pages run dry after 7.
    for page, items in ((1, folders(0, 5)), (2, folders(5, 2)), (3, [])):
        mocked.get(
            FOLDERS,
            json=items,
            headers={"X-Total-Count": "12"},
            match=[matchers.query_param_matcher({"page": str(page), "limit": "5"})],
        )
    assert len(list(client.iter_registration_folders(limit=5))) == 7
    assert len(mocked.calls) == 3


# -- payments -------------------------------------------------------------------------------------

PAYMENTS = f"{BASE}/payments"


def payment(payment_id, state="issued"):
    return {"id": payment_id, "externalId": "4270885603", "registrationFolderExternalId": "4270885603",
            "type": "bill", "state": state, "amount": 1800, "transactionDate": "2025-03-01T10:00:00.000Z"}


def test_list_payments_reads_every_page_newest_first(client, mocked):
    wanted = {"registrationFolderId": "4270885603", "sort": "lastUpdate", "order": "desc", "limit": "2"}
    for page, items in ((1, [payment(3), payment(2)]), (2, [payment(1)])):
        mocked.get(PAYMENTS, json=items, headers={"X-Total-Count": "3"},
                   match=[matchers.query_param_matcher({**wanted, "page": str(page)})])
    assert [p["id"] for p in client.list_payments("4270885603", limit=2)] == [3, 2, 1]
    assert len(mocked.calls) == 2


def test_list_payments_sends_type_and_state(client, mocked):
    mocked.get(PAYMENTS, json=[payment(1)], match=[matchers.query_param_matcher(
        {"registrationFolderId": "4270885603", "type": "bill", "state": "issued", "sort": "lastUpdate",
         "order": "desc", "page": "1", "limit": "100"})])
    assert client.list_payments("4270885603", type="bill", state="issued") == [payment(1)]
    mocked.get(PAYMENTS, json=[])
    assert client.list_payments("4270885603", type="deposit") == []


@pytest.mark.parametrize("body", ['{"items": []}', '[1, 2]', '[{"id": 1}, "x"]', "null", '"text"', "not json",
                                  '[[{"id": 1}]]'])
def test_list_payments_with_a_broken_answer_is_a_protocol_error(client, mocked, body):
    mocked.get(PAYMENTS, body=body)
    with pytest.raises(WedofProtocolError):
        client.list_payments("4270885603")


@pytest.mark.parametrize("kwargs", [{"registration_folder_id": "../users/me"}, {"registration_folder_id": None},
                                    {"registration_folder_id": " 4270885603"}, {"type": "cash"},
                                    {"type": "BILL"}, {"state": ""}, {"state": 5}, {"state": "issued&x=1"},
                                    {"limit": 0}, {"limit": True}])
def test_list_payments_refuses_bad_arguments_before_any_request(client, mocked, kwargs):
    kwargs = {"registration_folder_id": "4270885603", **kwargs}
    with pytest.raises(ValueError):
        client.list_payments(kwargs.pop("registration_folder_id"), **kwargs)
    assert len(mocked.calls) == 0


def test_list_payments_errors_are_typed(client, mocked):
    mocked.get(PAYMENTS, status=400, json={"detail": "limit: bad", "violations": [{"propertyPath": "limit",
                                                                                    "title": "bad"}]})
    with pytest.raises(WedofValidationError):
        client.list_payments("4270885603")
