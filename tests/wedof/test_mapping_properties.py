"""Generated folders: hostile input never crashes nor half-writes; a page equals its folders one by one.

Each example runs inside the test's transaction and is rolled back, so examples never see each
other's rows (the tenants are committed once, before the first example).
"""

from __future__ import annotations

import copy
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from bdc.models import Beneficiary, Enrollment, Evaluation, User
from tests.wedof.test_mapping_apply import add_tenant, counts, make_folder, snapshot, statements
from wedof.mapping import ApplyResult, FolderRejected, apply_folder, apply_folders

# MAPPING_EXAMPLES=2000 runs a longer, randomized hunt; the suite runs a fixed, quick set.
_HUNT = int(os.environ.get("MAPPING_EXAMPLES", "0"))
SETTINGS = settings(
    max_examples=_HUNT or 40,
    deadline=None,
    derandomize=not _HUNT,  # the same examples every suite run: a failure is reproducible, the duration stable
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

# Text including what databases refuse: NUL, lone surrogates, huge strings, placeholders.
nasty_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "",
            " ",
            "string",
            "null",
            "N/A",
            "\x00",
            "a\x00b",
            "\ud800",
            "Hélène\udfff",
            "x" * 600,
            "2024-02-30T00:00:00Z",
            "9999-12-31T23:59:59-05:00",
            "0001-01-01T00:00:00+05:00",
            "1987-05-14",
            "2025-02-03T09:12:44.517Z",
            "1e999",
            "-1",
            "NaN",
        ]
    ),
)
scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    nasty_text,
)
json_value = st.recursive(
    scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
ATTENDEE_KEYS = [
    "firstName",
    "lastName",
    "email",
    "phoneNumber",
    "phoneFixed",
    "dateOfBirth",
    "gender",
    "degree",
    "degreeTitle",
    "poleEmploiId",
]
ADDRESS_KEYS = [
    "number",
    "roadTypeLabel",
    "roadName",
    "zipCode",
    "city",
    "country",
    "countryCode",
    "fullAddress",
]
ACTION_KEYS = [
    "title",
    "content",
    "trainingGoal",
    "indicativeDuration",
    "sessionStartDate",
    "sessionEndDate",
    "trainingActionId",
]
TOP_KEYS = ["state", "billingState", "completionRate", "lastUpdate", "createdOn", "permalink"]
HISTORY_KEYS = ["acceptedDate", "terminatedDate", "serviceDoneDeclaredDate", "serviceDoneValidatedDate"]


def optional_keys(keys, values):
    return st.fixed_dictionaries({}, optional={key: values for key in keys})


# Anything at all, shaped enough like a folder to reach the deep code paths.
hostile_folder = st.one_of(
    json_value,
    st.fixed_dictionaries(
        {},
        optional={
            "externalId": st.one_of(json_value, st.from_regex(r"[0-9]{1,14}", fullmatch=True)),
            "attendee": st.one_of(json_value, optional_keys(["id", *ATTENDEE_KEYS, "address"], json_value)),
            "trainingActionInfo": st.one_of(
                json_value, optional_keys(["externalId", *ACTION_KEYS], json_value)
            ),
            "history": st.one_of(json_value, optional_keys(HISTORY_KEYS, json_value)),
            **{key: json_value for key in TOP_KEYS},
        },
    ),
)

# A folder with usable keys (folder number, attendee id, training action id) and hostile everything else.
usable_folder = st.builds(
    lambda number, attendee_id, action, top, attendee, address, info, history: {
        **top,
        "externalId": number,
        "history": history,
        "attendee": {**attendee, "id": attendee_id, "address": address},
        "trainingActionInfo": {**info, "externalId": action},
    },
    st.from_regex(r"[0-9]{10,14}", fullmatch=True),
    st.one_of(st.integers(min_value=1, max_value=2**62), st.from_regex(r"[0-9]{1,10}", fullmatch=True)),
    st.from_regex(r"[0-9]{14}_[a-z0-9-]{1,40}", fullmatch=True),
    optional_keys(TOP_KEYS, scalar),
    optional_keys(ATTENDEE_KEYS, scalar),
    st.one_of(json_value, optional_keys(ADDRESS_KEYS, scalar)),
    optional_keys(ACTION_KEYS, scalar),
    st.one_of(json_value, optional_keys(HISTORY_KEYS, scalar)),
)


def _check_rows(session):
    for user in session.scalars(select(User)):
        assert user.email is None or (user.email == user.email.strip().lower() and "@" in user.email)
    for enrollment in session.scalars(select(Enrollment)):
        assert 0 <= enrollment.progress <= 100
    for evaluation in session.scalars(select(Evaluation)):
        assert 0 <= evaluation.score <= 100


@SETTINGS
@given(folders=st.lists(hostile_folder, min_size=1, max_size=4))
def test_hostile_folders_never_crash_and_rejections_write_nothing(session, folders):
    session.rollback()
    tenant = session.scalar(select(Beneficiary.tenant_id).limit(0)) or _tenant_id(session)
    try:
        for folder in folders:
            before = counts(session)
            try:
                apply_folder(session, tenant, folder)
            except FolderRejected:
                assert counts(session) == before  # never a partial write
        results = apply_folders(session, tenant, folders)
        assert len(results) == len(folders)
        assert all(isinstance(result, ApplyResult | FolderRejected) for result in results)
        trusted = apply_folders(session, tenant, folders, trust_last_update=True)  # what syncs call
        assert [type(result) for result in trusted] == [type(result) for result in results]
        _check_rows(session)
    finally:
        session.rollback()


@SETTINGS
@given(folder=usable_folder)
def test_usable_folders_with_hostile_values_apply_and_replay_as_unchanged(session, folder):
    session.rollback()
    tenant = _tenant_id(session)
    try:
        result = apply_folder(session, tenant, copy.deepcopy(folder))
        assert result.outcome == "created"
        session.flush()
        session.expire_all()  # compare against what the database really holds
        before = snapshot(session)
        with statements(session) as seen:
            replay = apply_folder(session, tenant, copy.deepcopy(folder))
        assert replay.outcome == "unchanged", folder
        assert set(seen) == {"SELECT"}, seen
        assert snapshot(session) == before
        _check_rows(session)
    finally:
        session.rollback()


_tenants: dict[str, int] = {}


def _tenant_id(session) -> int:
    """One committed tenant per database (the session fixture gives each test a fresh one)."""
    key = str(session.get_bind().url)
    if key not in _tenants:
        _tenants[key] = add_tenant(session, "props")
        session.commit()
    return _tenants[key]


# -- batch == one by one ------------------------------------------------------------------------------

STATES = [
    "notProcessed",
    "accepted",
    "inTraining",
    "terminated",
    "serviceDoneDeclared",
    "canceledByAttendee",
    "refusedByFinancer",
    "somethingNew",
    None,
]
DATES = [
    "2025-01-01T00:00:00.000Z",
    "2025-02-01T00:00:00.000Z",
    "2025-02-01T00:00:00.000Z",
    "2025-03-01T00:00:00.000Z",
    None,
]


@st.composite
def small_world_page(draw, size):
    """Folders over few ids, so pages collide: shared attendees and programs, taken emails, duplicates.

    A folder's attendee and program follow from its number; an attendee's email and names and a
    program's title are the same in every folder of a page, as Wedof sends them (the attendee and
    the training action are shared objects there).
    """
    emails = draw(st.lists(st.sampled_from(["a@x.fr", "b@x.fr", "c@x.fr", None]), min_size=3, max_size=3))
    names = draw(st.lists(st.sampled_from(["Hélène", "Noël", None]), min_size=3, max_size=3))
    titles = draw(
        st.lists(st.sampled_from(["Bilan de compétences", "Anglais", None]), min_size=2, max_size=2)
    )
    page = []
    for _ in range(draw(st.integers(min_value=1, max_value=size))):
        number = draw(st.integers(min_value=0, max_value=4))
        attendee = number // 2
        page.append(
            make_folder(
                str(9000 + number),
                attendee_id=attendee,
                email=emails[attendee],
                state=draw(st.sampled_from(STATES)),
                last_update=draw(st.sampled_from(DATES)),
                completion_rate=draw(st.sampled_from([None, 0, 50, 100])),
                action_id=f"action-{number % 2}",
                title=titles[number % 2],
            )
        )
        page[-1]["attendee"]["firstName"] = names[attendee]
    return page


def _apply_each(session, tenant, folders):
    for folder in folders:
        try:
            apply_folder(session, tenant, folder)
        except FolderRejected:
            pass


@SETTINGS
@given(stored=small_world_page(4), page=small_world_page(7))
def test_a_page_equals_its_folders_applied_one_by_one(session, stored, page):
    session.rollback()
    tenant = _tenant_id(session)
    other = _other_tenant_id(session)
    try:
        # Some rows exist already, and one email is taken in another tenant.
        _apply_each(session, tenant, stored)
        apply_folder(session, other, make_folder("1", attendee_id=1, email="c@x.fr"))
        _apply_each(session, tenant, page)
        one_by_one = snapshot(session)
        session.rollback()
        _apply_each(session, tenant, stored)
        apply_folder(session, other, make_folder("1", attendee_id=1, email="c@x.fr"))
        results = apply_folders(session, tenant, page)
        assert snapshot(session) == one_by_one
        assert all(isinstance(result, ApplyResult) for result in results)
        # Replaying the page converges: an email another attendee gave up later in the page is
        # taken on the next pass, then nothing changes any more.
        for _ in range(3):
            if {r.outcome for r in apply_folders(session, tenant, page)} <= {"unchanged", "stale"}:
                break
        with statements(session) as seen:
            replay = apply_folders(session, tenant, page)
        assert {r.outcome for r in replay} <= {"unchanged", "stale"}
        assert set(seen) <= {"SELECT"}
    finally:
        session.rollback()


def _other_tenant_id(session) -> int:
    key = "other:" + str(session.get_bind().url)
    if key not in _tenants:
        _tenants[key] = add_tenant(session, "props-other")
        session.commit()
    return _tenants[key]
