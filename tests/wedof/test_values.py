"""The value and folder readers on hostile input: they never raise (a folder is read or rejected), and
what they return always fits its column. Hypothesis drives hostile scalars, many ISO date shapes,
placeholders in every case, and hostile values at every path of real folders.
"""

from __future__ import annotations

import copy
import os
from datetime import UTC, date, datetime

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from wedof import samples
from wedof.mapping import folder, values
from wedof_sandbox.population import generate

# VALUE_EXAMPLES=20000 runs a longer, randomized hunt; the suite runs a fixed, quick set.
_HUNT = int(os.environ.get("VALUE_EXAMPLES", "0"))
SETTINGS = settings(
    max_examples=_HUNT or 300,
    deadline=None,
    derandomize=not _HUNT,  # the same examples every suite run: a failure is reproducible
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
POPULATION_SEED = 1


def storable(text: str) -> bool:
    """What PostgreSQL and UTF-8 accept: no NUL, no lone surrogate."""
    return "\x00" not in text and text.encode("utf-8", "strict") is not None


# --- inputs -------------------------------------------------------------------------------------------

surrogate = st.integers(min_value=0xD800, max_value=0xDFFF).map(chr)
# Pieces that exercise every branch: NUL, surrogates, accents, case-changing letters (İ lower-cases to
# two characters), Unicode and ASCII-control whitespace that str.strip removes, placeholder words.
PIECES = [
    "", " ", "  ", "\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\u00a0", "\u2028", "\u3000",
    "\x00", "é", "É", "ß", "İ", "ﬁ", "Σ", "ς", "K", "\u0301", "\U0001f600", "a", "Z", "z", "0", "9",
    ",", ".", "-", "+", ":", "@", "/", "?", "_", "1e3", "1_000", "١٢", "inf", "nan", "string", "STRING",
    "N/A", "n/a", "null", "None", "undefined", "Bilan", "bilans", "de", "compétences", "competence",
]
pieces_text = st.lists(st.one_of(st.sampled_from(PIECES), surrogate, st.text(max_size=3)), max_size=8).map(
    "".join
)


@st.composite
def placeholder_any_case(draw):
    word = draw(st.sampled_from(sorted(values.PLACEHOLDERS)))
    cased = "".join(ch.upper() if draw(st.booleans()) else ch for ch in word)
    return draw(st.sampled_from(["", " ", "\t", "\x00"])) + cased + draw(st.sampled_from(["", " ", "\n", "\x00"]))


@st.composite
def iso_text(draw):
    """ISO-8601-ish text of many shapes: Wedof's own, offsets, naive, date-only, week dates, broken ones."""
    year = draw(st.sampled_from(["0001", "1968", "2024", "2025", "9999", "0000", "20240", "24", "+2024"]))
    month = draw(st.sampled_from(["01", "02", "03", "12", "13", "00", "1", ""]))
    day = draw(st.sampled_from(["01", "15", "28", "29", "30", "31", "32", "00", "5"]))
    date_sep = draw(st.sampled_from(["-", "-", "-", "", "/"]))
    date_part = year + date_sep + month + (date_sep if month else "") + day
    if draw(st.booleans()):
        week = draw(st.sampled_from(["W01", "W53", "W11-3", "W11-8", "W00"]))
        date_part = year + date_sep + week
    sep = draw(st.sampled_from(["T", "T", "T", " ", "t", "_", "", "TT"]))
    time_part = draw(
        st.sampled_from(["14:26:51", "00:00:00", "23:59:59", "24:00:00", "14:26", "14", "142651", "25:00", ""])
    )
    fraction = draw(st.sampled_from(["", "", ".842", ".000", ".999", ".5", ".123456", ".1234567", ",842", "."]))
    offset = draw(
        st.sampled_from(["Z", "Z", "z", "+00:00", "-00:00", "+02:00", "-05:30", "+0200", "+00", "+14:00",
                         "+24:00", "+02:00:30", "+02:00:30.5", "", "ZZ", "Z+01:00", "+01:00Z"])
    )
    with_time = draw(st.sampled_from([True, True, False]))
    core = date_part + (sep + time_part + fraction if with_time else "") + offset
    return draw(st.sampled_from(["", " ", "\x00", "\n"])) + core + draw(st.sampled_from(["", " ", "\x00"]))


WEDOF_DATES = [
    "2024-03-15T14:26:51.842Z", "2024-03-15T14:26:51Z", "2025-02-03T09:12:44.517Z", "1968-07-17T00:00:00.000Z",
    "0001-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z", "2024-02-30T00:00:00.000Z",
    "2024-03-15T24:00:00.000Z", "2024-03-15t14:26:51.842Z", "2024-03-15 14:26:51.842Z",
    "2024-03-15T14:26:51,842Z", "2024-03-15T14:26:51.842z", "+024-03-15T14:26:51.842Z",
    "2024-03-15T14:26:51.8420Z", "2024-03-15T14:26:51.84Z", "2024-03-15T14:26:51.8421", "2024-03-15T14:26:51.842+",
    "2024-03-15T14:26:51.8-01", "2024-03-15T14:26:51.842z", "2024-03-15T14:26:51.84-1Z", "2024-03-15X14:26:51.842Z", "2024-03-15T14:26:5a.842Z",
    "2024-03-15T14:26:51.\x0042Z", "\x002024-03-15T14:26:51.842Z", " 024-03-15T14:26:51.842Z",
    "2024-03-15T14:26:51+01Z", "2024-03-15T14:26:51.+01Z", "2024-03-15T14:26:51.842+00:00",
    "2024-03-15T14:26:51.842+02:00", "2024-03-15T14:26:51", "2024-03-15", "1987-05-14", "2024-W11-5",
    "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00", "2024-03-15T14:26:51.842Z" + " " * 40,
    "x" * 63 + "Z", "2024-03-15T14:26:51.842Z\u00a0", "２０２４-03-15T14:26:51.842Z",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    pieces_text,
    placeholder_any_case(),
    iso_text(),
    st.sampled_from(WEDOF_DATES),
    st.text(alphabet="0123456789 ,.-+eE_", max_size=12),
    st.sampled_from(["x" * 600, "é" * 300, " " + "a" * 64 + " ", "a" * 9, "a" * 10]),
)
any_value = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=4,
)
lengths = st.sampled_from([None, 0, 1, 3, 9, 10, 20, 50, 64, 200, 500])


# --- each reader: never raises, always a value fit for its column -----------------------------------------

@SETTINGS
@given(value=any_value, max_length=lengths)
def test_text_is_clean_trimmed_text_or_none(value, max_length):
    result = values.text(value, max_length)
    if result is not None:
        assert isinstance(result, str) and result == result.strip() and storable(result)
        assert result.lower() not in values.PLACEHOLDERS
        assert max_length is None or len(result) <= max_length


@SETTINGS
@given(value=placeholder_any_case())
def test_placeholders_in_any_case_are_missing(value):
    assert values.text(value) is None


@SETTINGS
@given(value=any_value, max_length=st.sampled_from([0, 1, 5, 9, 20, 50, 64]))
def test_short_text_is_never_cut(value, max_length):
    result = values.short_text(value, max_length)
    assert result is None or (len(result) <= max_length and result == values.text(value))


@SETTINGS
@given(
    value=st.one_of(
        any_value,
        st.tuples(pieces_text, st.sampled_from(["@", "@@", ""]), pieces_text, st.sampled_from([".fr", ".", ""]))
        .map("".join),
        st.sampled_from(["Hugo.Lemaitre@Example.FR", " a@b.c ", "a@.b.c", "a@b.", "a b@c.d", "a@b\u00a0.c",
                         "x" * 250 + "@b.fr", "ÉLODIE@exemple.fr", "a\x00@b.fr", "a@b.fr\ud800"]),
    )
)
@example(value="Hugo.Lemaitre@Example.FR")
def test_email_is_lower_case_with_one_at_or_none(value):
    result = values.email(value)
    if result is not None:
        assert result == result.lower() and result.count("@") == 1 and len(result) <= values.MAX_EMAIL_LENGTH
        assert " " not in result and storable(result)


@SETTINGS
@given(value=any_value)
@example(value=True)
@example(value=2**1100)
@example(value=" 99,5 ")
def test_number_is_finite_and_percent_within_0_and_100(value):
    number, rate = values.number(value), values.percent(value)
    assert number is None or (isinstance(number, float) and number == number and abs(number) != float("inf"))
    assert rate is None or 0.0 <= rate <= 100.0
    assert (number is None) == (rate is None)


@SETTINGS
@given(value=st.one_of(iso_text(), st.sampled_from(WEDOF_DATES), any_value))
@example(value="2024-03-15T14:Z\x00:51.842Z")
def test_dates_are_aware_utc_or_none(value):
    moment, day = values.datetime_utc(value), values.date_only(value)
    assert moment is None or (isinstance(moment, datetime) and moment.tzinfo is UTC)
    assert day is None or (type(day) is date)


@pytest.mark.parametrize("value, expected", [
    ("2024-03-15T14:26:51.842Z", datetime(2024, 3, 15, 14, 26, 51, 842000, tzinfo=UTC)),
    ("2024-03-15T14:26:51Z", datetime(2024, 3, 15, 14, 26, 51, tzinfo=UTC)),
    ("2024-03-15T16:26:51.842+02:00", datetime(2024, 3, 15, 14, 26, 51, 842000, tzinfo=UTC)),
    ("2024-03-15T14:26:51", datetime(2024, 3, 15, 14, 26, 51, tzinfo=UTC)),  # naive means UTC
    ("2024-02-30T00:00:00.000Z", None), ("string", None), ("", None), (None, None), (1710512811, None),
])
def test_wedof_datetimes(value, expected):
    assert values.datetime_utc(value) == expected


def test_dates_of_wedof_midnights_and_plain_days():
    assert values.date_only("1987-05-14T00:00:00.000Z") == date(1987, 5, 14)
    assert values.date_only("1987-05-14") == date(1987, 5, 14)
    assert values.date_only("1987-02-30") is None


@SETTINGS
@given(value=st.one_of(st.text(max_size=40), pieces_text))
def test_fold_drops_accents_and_case(value):
    folded = values.fold(value)
    assert folded == folded.casefold()
    assert values.fold("Bilan de Compétences") == "bilan de competences"


# --- whole folders: read or rejected, never a crash ---------------------------------------------------------

def outcome(read, *args):
    try:
        return read(*args)
    except folder.FolderRejected as exc:
        return exc


def test_the_sandbox_population_and_the_samples_are_read():
    population = generate(2000, POPULATION_SEED).folders
    for raw in population:
        data = folder.read_folder(raw)
        assert data.last_update is not None and data.attendee is not None and data.program is not None
        assert folder.read_version(raw)[0] == data.external_id
    assert {folder.read_folder(raw).program.category for raw in population[:200]} == {"bilan_competences", "formation"}
    assert folder.read_folder(samples.registration_folder_sample()).external_id
    with pytest.raises(folder.FolderRejected, match="certification"):
        folder.read_folder(samples.certification_folder_sample())


ATTENDEE_PATHS = [("attendee", key) for key in (
    "id", "firstName", "lastName", "email", "phoneNumber", "phoneFixed", "dateOfBirth", "gender", "degree",
    "degreeTitle", "poleEmploiId", "address")]
ADDRESS_PATHS = [("attendee", "address", key) for key in (
    "number", "roadTypeLabel", "roadName", "zipCode", "city", "country", "countryCode", "fullAddress")]
ACTION_PATHS = [("trainingActionInfo", key) for key in (
    "externalId", "trainingActionId", "title", "content", "trainingGoal", "indicativeDuration",
    "sessionStartDate", "sessionEndDate")]
HISTORY_PATHS = [("history", key) for key in (
    "acceptedDate", "terminatedDate", "serviceDoneDeclaredDate", "serviceDoneValidatedDate")]
TOP_PATHS = [(key,) for key in (
    "externalId", "state", "billingState", "completionRate", "lastUpdate", "createdOn", "permalink",
    "attendee", "trainingActionInfo", "history", "cdcState")]
PATHS = ATTENDEE_PATHS + ADDRESS_PATHS + ACTION_PATHS + HISTORY_PATHS + TOP_PATHS
BASE_FOLDERS = generate(24, POPULATION_SEED).folders + [samples.registration_folder_sample()]


def with_values(base, changes):
    result = copy.deepcopy(base)
    for path, value in changes:
        target = result
        for key in path[:-1]:
            if not isinstance(target.get(key), dict):
                target[key] = {}
            target = target[key]
        target[path[-1]] = value
    return result


@SETTINGS
@given(
    base=st.sampled_from(BASE_FOLDERS),
    changes=st.lists(st.tuples(st.sampled_from(PATHS), any_value), max_size=6),
    kind=st.sampled_from(folder.KINDS),
)
def test_hostile_folders_are_read_or_rejected(base, changes, kind):
    raw = with_values(base, changes)
    result = outcome(folder.read_folder, raw, kind)
    assert isinstance(result, folder.FolderData | folder.FolderRejected)
    version = folder.read_version(raw)
    if isinstance(result, folder.FolderData):
        assert version is not None and version[0] == result.external_id
        if result.attendee is not None:
            assert all(storable(v) for v in vars(result.attendee).values() if isinstance(v, str))


@pytest.mark.parametrize("external_id, expected", [
    ("1966755308", "1966755308"), (1966755308, "1966755308"), ("  42  ", "42"), ("x.y_z:1-2", "x.y_z:1-2"),
    ("a" * 52, "a" * 52), ("a" * 53, None), ("", None), (" ", None), ("١٢٣", None), ("１２３", None),
    ("12 34", None), ("_1", None), ("a..b", None), ("abc\x00", None), ("\ud800", None), (None, None),
    (True, None), (19.0, None), (["1"], None), ({"id": 1}, None), (-5, None), ("../users/me", None),
])
def test_folder_numbers(external_id, expected):
    result = outcome(folder.read_folder, {**samples.registration_folder_sample(), "externalId": external_id})
    if expected is None:
        assert isinstance(result, folder.FolderRejected)
    else:
        assert result.external_id == expected
