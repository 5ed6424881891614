"""Billing as Wedof bills: toBill only once the financer validates the service, /billing needs a bill number,
the financer's payment is listed by /api/payments. In-process (Flask test client) unless a real process is needed."""

from __future__ import annotations

import pytest

from tests.sandbox.receiver import WebhookReceiver
from tests.sandbox.test_state_machine import BODIES, KEY, folder_in
from wedof_sandbox import population
from wedof_sandbox.state import SandboxState

PAYMENT_KEYS = {"id", "externalId", "registrationFolderExternalId", "type", "state", "amount", "transactionDate",
                "lastUpdate", "billNumber", "_links"}


def move(client, external_id: str, target: str) -> dict:
    """The attendee's or financer's move, through the control endpoint (what the simulation does)."""
    response = client.post(f"/_sandbox/folders/{external_id}/moves/{target}")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def billable(client, **patch) -> dict:
    """A folder whose service the financer has just validated."""
    folder = folder_in(client, "serviceDoneDeclared", billingState="notBillable", **patch)
    return move(client, folder["externalId"], "serviceDoneValidated")


def bill(client, external_id: str, body=None):
    return client.post(f"/api/registrationFolders/{external_id}/billing", headers=KEY, json=body)


def get(client, external_id: str) -> dict:
    return client.get(f"/api/registrationFolders/{external_id}", headers=KEY).get_json()


def billings(client, external_id: str) -> int:
    return client.get("/_sandbox/transitions").get_json().get(external_id, {}).get("billing", 0)


def payments(client, **params):
    return client.get("/api/payments", headers=KEY, query_string=params)


def key_paths(obj, prefix="") -> set[str]:
    if not isinstance(obj, dict):
        return set()
    return {f"{prefix}{k}" for k in obj} | {p for k, v in obj.items() for p in key_paths(v, f"{prefix}{k}.")}


# -- toBill comes with the financer's validation ------------------------------------------------


def test_a_declared_service_is_billable_only_once_the_financer_validates_it(client):
    folder = folder_in(client, "inTraining", billingState="notBillable")
    external_id = folder["externalId"]
    declared = client.post(f"/api/registrationFolders/{external_id}/serviceDone", headers=KEY,
                           json=BODIES["serviceDone"]).get_json()
    assert (declared["state"], declared["billingState"]) == ("serviceDoneDeclared", "notBillable")
    refused = bill(client, external_id, {"billNumber": "FAC-1"})
    assert refused.status_code == 400 and refused.get_json()["violations"][0]["propertyPath"] == "billingState"
    assert get(client, external_id) == declared and billings(client, external_id) == 0
    validated = move(client, external_id, "serviceDoneValidated")
    assert (validated["state"], validated["billingState"]) == ("serviceDoneValidated", "toBill")
    assert validated["history"]["serviceDoneValidatedDate"] == validated["lastUpdate"] > declared["lastUpdate"]
    assert bill(client, external_id, {"billNumber": "FAC-1"}).status_code == 200


@pytest.mark.parametrize("before,after", [("notBillable", "toBill"), ("depositPaid", "toBill"),
                                          ("toBill", "toBill"), ("billed", "billed"), ("paid", "paid")])
def test_validation_sets_to_bill_unless_already_billed(client, before, after):
    folder = folder_in(client, "serviceDoneDeclared", billingState=before)
    assert move(client, folder["externalId"], "serviceDoneValidated")["billingState"] == after


@pytest.mark.parametrize("state,target", [("serviceDoneDeclared", "paid"), ("inTraining", "serviceDoneValidated"),
                                          ("serviceDoneValidated", "serviceDoneValidated"),
                                          ("serviceDoneDeclared", "happy")])
def test_external_moves_follow_the_state_machine(client, state, target):
    folder = folder_in(client, state, billingState="toBill")
    response = client.post(f"/_sandbox/folders/{folder['externalId']}/moves/{target}")
    assert response.status_code == 400 and response.get_json()["violations"]
    assert get(client, folder["externalId"]) == folder
    assert client.post("/_sandbox/folders/0000000000/moves/paid").status_code == 404


# -- POST /billing ------------------------------------------------------------------------------


def test_billing_records_the_bill_once(client):
    folder = billable(client)
    external_id = folder["externalId"]
    response = bill(client, external_id, {"billNumber": "  FAC-2025-0042 "})
    assert response.status_code == 200
    billed = response.get_json()
    assert (billed["billingState"], billed["billNumber"]) == ("billed", "FAC-2025-0042")  # stored trimmed
    assert isinstance(billed["billId"], int)
    info = folder["trainingActionInfo"]
    assert (billed["amountTtc"], billed["amountToInvoice"], billed["amountHt"]) == (
        info["totalIncl"], info["totalIncl"], info["totalExcl"])
    assert billed["history"]["billedDate"] == billed["lastUpdate"] > folder["lastUpdate"]
    assert key_paths(billed) == key_paths(folder)
    assert billings(client, external_id) == 1
    again = bill(client, external_id, {"billNumber": "FAC-2025-0043"})
    assert again.status_code == 400 and again.get_json()["violations"][0]["propertyPath"] == "billingState"
    assert get(client, external_id) == billed and billings(client, external_id) == 1


@pytest.mark.parametrize("body,title", [
    (None, "This value should not be blank."), ({}, "This value should not be blank."),
    ({"billNumber": None}, "This value should not be blank."), ({"billNumber": ""}, "This value should not be blank."),
    ({"billNumber": "   "}, "This value should not be blank."),
    ({"billNumber": "\t\n\u00a0"}, "This value should not be blank."),
    ({"billNumber": "x" * 101}, None), ({"billNumber": "F" * 100_000}, None),
    ({"billNumber": 42}, None), ({"billNumber": True}, None), ({"billNumber": ["F-1"]}, None),
    ({"billNumber": {"n": "F-1"}}, None), ({"number": "F-1"}, "This value should not be blank."),
])
def test_hostile_bill_numbers_are_refused(client, body, title):
    folder = billable(client)
    response = bill(client, folder["externalId"], body)
    assert response.status_code == 400, response.get_data(as_text=True)
    violation = response.get_json()["violations"][0]
    assert violation["propertyPath"] == "billNumber"
    if title:
        assert violation["title"] == title
    assert get(client, folder["externalId"]) == folder and billings(client, folder["externalId"]) == 0


def test_a_bill_number_of_100_characters_is_accepted(client):
    folder = billable(client)
    number = "F" * 100
    billed = bill(client, folder["externalId"], {"billNumber": f" {number} "}).get_json()
    assert billed["billNumber"] == number


def test_a_bill_number_already_used_by_another_folder_is_refused(client):
    first = billable(client)  # the first folder
    assert bill(client, first["externalId"], {"billNumber": "FAC-2025-0001"}).status_code == 200
    other = client.get("/_sandbox/truth").get_json()[1]["externalId"]
    client.put(f"/_sandbox/folders/{other}", json={"state": "serviceDoneValidated", "billingState": "toBill"})
    before = get(client, other)
    refused = bill(client, other, {"billNumber": " FAC-2025-0001 "})
    assert refused.status_code == 400
    violation = refused.get_json()["violations"][0]
    assert violation["propertyPath"] == "billNumber" and first["externalId"] in violation["title"]
    assert get(client, other) == before and billings(client, other) == 0
    assert bill(client, other, {"billNumber": "FAC-2025-0002"}).status_code == 200


def test_billing_body_must_be_an_object(client):
    folder = billable(client)
    assert bill(client, folder["externalId"], ["F-1"]).status_code == 400
    assert bill(client, folder["externalId"], {"billNumber": "F-1", "vatRate": 120}).status_code == 400
    assert get(client, folder["externalId"]) == folder


# -- payments -----------------------------------------------------------------------------------


def test_the_financers_payment_is_listed_and_the_folder_keeps_its_keys(client):
    folder = billable(client)
    external_id = folder["externalId"]
    billed = bill(client, external_id, {"billNumber": "FAC-77"}).get_json()
    assert payments(client, registrationFolderId=external_id).get_json() == []
    paid = move(client, external_id, "paid")
    assert paid["billingState"] == "paid" and paid["history"]["paidDate"] == paid["lastUpdate"]
    assert key_paths(paid) == key_paths(folder)
    response = payments(client, registrationFolderId=external_id)
    assert response.status_code == 200 and response.headers["X-Total-Count"] == "1"
    [payment] = response.get_json()
    assert set(payment) == PAYMENT_KEYS and isinstance(payment["id"], int)
    assert payment["externalId"] == payment["registrationFolderExternalId"] == external_id
    assert (payment["type"], payment["state"], payment["billNumber"]) == ("bill", "issued", "FAC-77")
    assert payment["amount"] == billed["amountToInvoice"]
    assert payment["transactionDate"] == payment["lastUpdate"] == paid["history"]["paidDate"]
    again = client.post(f"/_sandbox/folders/{external_id}/moves/paid")  # paid once, not twice
    assert again.status_code == 400 and len(payments(client, registrationFolderId=external_id).get_json()) == 1


def test_the_pay_control_answers_the_payment(client):
    folder = billable(client)
    refused = client.post(f"/_sandbox/folders/{folder['externalId']}/pay")  # toBill: nothing to pay yet
    assert refused.status_code == 400 and refused.get_json()["violations"][0]["propertyPath"] == "billingState"
    bill(client, folder["externalId"], {"billNumber": "FAC-9"})
    response = client.post(f"/_sandbox/folders/{folder['externalId']}/pay")
    assert response.status_code == 200
    assert [response.get_json()] == payments(client, registrationFolderId=folder["externalId"]).get_json()
    assert get(client, folder["externalId"])["billingState"] == "paid"


def test_reset_drops_the_payments_made_since_seeding(client):
    seeded = payments(client).get_json()
    folder = billable(client)
    bill(client, folder["externalId"], {"billNumber": "FAC-1"})
    move(client, folder["externalId"], "paid")
    assert len(payments(client).get_json()) == len(seeded) + 1
    client.post("/_sandbox/reset", json={"folders": 40, "seed": 3})
    assert payments(client).get_json() == seeded


def test_seeded_paid_folders_have_their_payment_and_no_other_folder_has_one(sbx):
    truth = {f["externalId"]: f for f in sbx.control("GET", "/truth")}
    listed = every_payment(sbx)
    paid = {e for e, f in truth.items() if f["billingState"] == "paid"}
    assert paid and {p["registrationFolderExternalId"] for p in listed} == paid and len(listed) == len(paid)
    assert len({p["id"] for p in listed}) == len(listed)
    for payment in listed:
        folder = truth[payment["externalId"]]
        assert payment["billNumber"] == folder["billNumber"] and payment["amount"] == folder["amountToInvoice"]
        assert payment["transactionDate"] == folder["history"]["paidDate"]


def test_seeded_payments_are_deterministic_per_seed():
    def seeded(seed: int) -> list[dict]:
        state = SandboxState(folders=150, seed=seed, delivery_threads=1)
        try:
            return state.payments.all()
        finally:
            state.close()

    first = seeded(5)
    assert first and seeded(5) == first and seeded(6) != first


def test_payment_listing_pages_sorts_and_filters(sbx):
    every = sbx.api("GET", "/payments", params={"order": "asc"}).json()
    assert len(every) >= 2
    assert [p["lastUpdate"] for p in every] == sorted(p["lastUpdate"] for p in every)
    assert sbx.api("GET", "/payments", params={"sort": "lastUpdate"}).json() == every[::-1]  # desc by default
    pages = [sbx.api("GET", "/payments", params={"order": "asc", "limit": 1, "page": n}) for n in
             range(1, len(every) + 2)]
    assert [r.headers["X-Total-Count"] for r in pages] == [str(len(every))] * len(pages)
    assert [p for r in pages for p in r.json()] == every and pages[-1].json() == []
    for params, expected in (({"type": "bill"}, every), ({"type": "deposit"}, []), ({"type": "all"}, every),
                             ({"state": "issued"}, every), ({"state": "rejected"}, []),
                             ({"registrationFolderId": "0000000000"}, []),
                             ({"registrationFolderId": every[0]["externalId"]}, every[:1])):
        assert sbx.api("GET", "/payments", params={"order": "asc", **params}).json() == expected, params


@pytest.mark.parametrize("params,path", [
    ({"limit": 0}, "limit"), ({"limit": 101}, "limit"), ({"limit": "ten"}, "limit"), ({"limit": -1}, "limit"),
    ({"page": 0}, "page"), ({"page": "x"}, "page"), ({"sort": "id"}, "sort"), ({"sort": "amount"}, "sort"),
    ({"order": "up"}, "order"), ({"type": "cash"}, "type"), ({"type": "bill,refund"}, "type"),
    ({"state": "paid"}, "state"), ({"limit": "1" * 400}, "limit"),
])
def test_bad_payment_parameters_are_400(client, params, path):
    response = payments(client, **params)
    assert response.status_code == 400
    assert response.get_json()["violations"][0]["propertyPath"] == path


def test_payments_need_the_key_and_take_faults(sbx):
    assert sbx.api("GET", "/payments", headers={"X-Api-Key": "wrong"}).status_code == 401
    sbx.control("PUT", "/faults", json={"error_rate": 1})
    sbx.control("POST", "/requests/reset")
    assert sbx.api("GET", "/payments").status_code in (500, 502, 503)
    counters = sbx.control("GET", "/requests")
    assert counters["faults"]["error"] == 1 and counters["by_route"] == {"GET /api/payments": 1}


# -- population and simulation --------------------------------------------------------------------


def assert_billing_follows_validation(folders: list[dict]) -> None:
    for folder in folders:
        if folder["state"] == "serviceDoneDeclared":
            assert folder["billingState"] not in ("toBill", "billed", "paid"), folder["externalId"]
        if folder["billingState"] in ("toBill", "billed", "paid"):
            assert folder["state"] == "serviceDoneValidated", folder["externalId"]


def test_population_bills_only_validated_services():
    folders = population.generate(1500, 11).folders
    assert_billing_follows_validation(folders)
    assert {f["billingState"] for f in folders if f["state"] == "serviceDoneDeclared"} == {"notBillable"}
    assert {f["billingState"] for f in folders if f["state"] == "serviceDoneValidated"} == {"toBill", "billed", "paid"}


def every_payment(sbx) -> list[dict]:
    first = sbx.api("GET", "/payments", params={"limit": 100})
    pages = -(-int(first.headers["X-Total-Count"]) // 100)
    return first.json() + [p for n in range(2, pages + 1)
                           for p in sbx.api("GET", "/payments", params={"limit": 100, "page": n}).json()]


def simulate(sbx, **body) -> tuple[dict, dict]:
    """(the seeded folders by externalId, the summary of 3000 simulated changes)."""
    sbx.control("POST", "/reset", json={"folders": 300, "seed": 21})
    seeded = {f["externalId"]: f for f in sbx.control("GET", "/truth")}
    return seeded, sbx.control("POST", "/simulate", json={"changes": 3000, **body})


def test_simulation_bills_as_an_organism_with_another_tool(sbx):
    seeded, summary = simulate(sbx)
    assert summary["by_event"]["registrationFolderBilling.billed"] > 0
    assert summary["by_event"]["registrationFolderBilling.paid"] > 0
    truth = sbx.control("GET", "/truth")
    assert_billing_follows_validation(truth)
    new_bills = [f for f in truth if f["billNumber"] != seeded[f["externalId"]]["billNumber"]]
    assert len(new_bills) == summary["by_event"]["registrationFolderBilling.billed"]
    assert all(f["billNumber"] == f"SIM-{f['externalId']}" for f in new_bills)
    listed = every_payment(sbx)
    paid = {f["externalId"]: f for f in truth if f["billingState"] == "paid"}
    assert sorted(p["externalId"] for p in listed) == sorted(paid)
    assert all(p["billNumber"] == paid[p["externalId"]]["billNumber"] for p in listed)
    assert sbx.control("GET", "/transitions") == {}  # the simulation is not the client under test


def test_simulation_can_leave_billing_to_the_client(sbx):
    _seeded, summary = simulate(sbx, organism_billing=False)
    assert "registrationFolderBilling.billed" not in summary["by_event"]
    assert summary["by_event"]["registrationFolderBilling.paid"] > 0  # the seeded bills still get paid
    truth = sbx.control("GET", "/truth")
    assert_billing_follows_validation(truth)
    assert not any((f["billNumber"] or "").startswith("SIM-") for f in truth)
    to_bill = [f["externalId"] for f in truth if f["billingState"] == "toBill"]
    assert to_bill  # left for the client
    assert sbx.api("POST", f"/registrationFolders/{to_bill[0]}/billing", json={"billNumber": "F-9"}).status_code == 200


@pytest.mark.parametrize("value", ["yes", "true", 1, 0, None, [], {}])
def test_organism_billing_must_be_a_boolean(client, value):
    response = client.post("/_sandbox/simulate", json={"changes": 5, "organism_billing": value})
    assert response.status_code == 400
    assert response.get_json()["violations"][0]["propertyPath"] == "organism_billing"


# -- webhooks -------------------------------------------------------------------------------------


def test_billing_webhooks(sbx):
    with WebhookReceiver() as receiver:
        assert sbx.api("POST", "/webhooks", json={"url": receiver.url, "events": ["*"]}).status_code == 201
        external_id = next(f["externalId"] for f in sbx.control("GET", "/truth") if f["state"] == "serviceDoneDeclared")
        sbx.control("PUT", f"/folders/{external_id}", json={"billingState": "notBillable"})
        sbx.control("POST", f"/folders/{external_id}/moves/serviceDoneValidated")
        assert sbx.api("POST", f"/registrationFolders/{external_id}/billing", json={"billNumber": "F-1"}).ok
        sbx.control("POST", f"/folders/{external_id}/moves/paid")
        stats = sbx.control("POST", "/deliveries/drain", json={"timeout": 30})
        assert stats["drained"]
        mine = sorted((r for r in receiver.accepted() if r.folder()["externalId"] == external_id),
                      key=lambda r: r.folder()["lastUpdate"])
        assert [(r.headers["x-wedof-event"], r.folder()["billingState"]) for r in mine] == [
            ("registrationFolder.updated", "notBillable"),
            ("registrationFolder.serviceDoneValidated", "toBill"),
            ("registrationFolderBilling.billed", "billed"),
            ("registrationFolderBilling.paid", "paid"),
        ]
