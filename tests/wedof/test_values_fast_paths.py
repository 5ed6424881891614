"""The optimised folder reading agrees exactly with the frozen straightforward reference, on every input.

:mod:`wedof.mapping.values` and :mod:`wedof.mapping.folder` take fast paths for the common case (ASCII
text, Wedof's own date format, known titles). The reference (tests/wedof/reference_*.py) is the code as
it was before them; here each reader is compared with it on hostile scalars, many ISO shapes, the whole
seeded sandbox population, the published samples and hostile folders. "Agrees" means same type, equal
and same ``repr`` (so a different tzinfo or ``-0.0`` counts as a difference), or the same rejection.
"""

from __future__ import annotations

import copy
import os
import sys

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.wedof import reference_folder, reference_values
from wedof import samples
from wedof.mapping import folder, values
from wedof_sandbox.population import generate

# FAST_PATH_EXAMPLES=20000 runs a longer, randomized hunt; the suite runs a fixed, quick set.
_HUNT = int(os.environ.get("FAST_PATH_EXAMPLES", "0"))
SETTINGS = settings(
    max_examples=_HUNT or 300,
    deadline=None,
    derandomize=not _HUNT,  # the same examples every suite run: a failure is reproducible
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
POPULATION_SIZE, POPULATION_SEED = 10_000, 1


def assert_same(fast, reference):
    assert type(fast) is type(reference), (fast, reference)
    assert fast == reference, (fast, reference)
    assert repr(fast) == repr(reference)


def outcome(read, *args):
    """What a reader gives: its result, or the rejection it raises (compared by type, reason and text)."""
    try:
        return read(*args)
    except folder.FolderRejected as exc:
        return ("rejected", type(exc), exc.reason, exc.external_id, str(exc))


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


# --- each reader against the reference ------------------------------------------------------------------

@SETTINGS
@given(value=any_value, max_length=lengths)
def test_text_agrees(value, max_length):
    assert_same(values.text(value, max_length), reference_values.text(value, max_length))


@SETTINGS
@given(value=any_value, max_length=st.sampled_from([0, 1, 5, 9, 20, 50, 64]))
def test_short_text_agrees(value, max_length):
    assert_same(values.short_text(value, max_length), reference_values.short_text(value, max_length))


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
def test_email_agrees(value):
    assert_same(values.email(value), reference_values.email(value))


@SETTINGS
@given(value=any_value)
@example(value=-0.0)
@example(value="-0")
@example(value="-0,0")
@example(value=100)
@example(value=100.5)
@example(value=-3)
@example(value=" 99,5 ")
@example(value=True)
@example(value=2**1100)
def test_number_and_percent_agree(value):
    assert_same(values.number(value), reference_values.number(value))
    assert_same(values.percent(value), reference_values.percent(value))


@SETTINGS
@given(value=st.one_of(iso_text(), st.sampled_from(WEDOF_DATES), any_value))
@example(value="2024-03-15T14:26:51.842Z")
@example(value="2024-03-15T14:Z\x00:51.842Z")  # fromisoformat stops reading at a NUL
@example(value="2024-03-15T14:26:51.Z\x002Z")
def test_datetime_utc_and_date_only_agree(value):
    assert_same(values.datetime_utc(value), reference_values.datetime_utc(value))
    assert_same(values.date_only(value), reference_values.date_only(value))


@pytest.mark.parametrize("value", WEDOF_DATES)
def test_every_listed_date_shape_agrees(value):
    assert_same(values.datetime_utc(value), reference_values.datetime_utc(value))
    assert_same(values.date_only(value), reference_values.date_only(value))


@SETTINGS
@given(value=st.one_of(st.text(max_size=40), pieces_text))
def test_fold_and_storable_agree(value):
    assert_same(values.fold(value), reference_values.fold(value))
    assert_same(values._storable(value), reference_values._storable(value))


def test_printable_text_holds_nothing_to_drop():
    """Why printable text skips the NUL and surrogate clean-up: both are unprintable."""
    assert [code for code in [0, *range(0xD800, 0xE000)] if chr(code).isprintable()] == []


def test_placeholder_spellings_are_exactly_what_lower_cases_to_a_placeholder():
    """Why a set lookup can replace ``lower() in PLACEHOLDERS``.

    Every listed spelling lower-cases to a placeholder, all ASCII case variants are listed, and no
    non-ASCII character lower-cases to a character a placeholder uses (only the Kelvin sign lower-cases
    to ASCII at all), so no other text lower-cases to a placeholder.
    """
    assert {spelling.lower() for spelling in values._PLACEHOLDER_SPELLINGS} == values.PLACEHOLDERS
    variants = sum(2 ** sum(ch.isalpha() for ch in word) for word in values.PLACEHOLDERS)
    assert len(values._PLACEHOLDER_SPELLINGS) == variants
    used = set("".join(values.PLACEHOLDERS))
    to_ascii = {
        chr(code): chr(code).lower()
        for code in range(128, sys.maxunicode + 1)
        if chr(code).lower().isascii()
    }
    assert not any(set(lowered) & used for lowered in to_ascii.values()), to_ascii
    assert all(len(spelling) <= values._MAX_PLACEHOLDER_LENGTH for spelling in values._PLACEHOLDER_SPELLINGS)


# --- whole folders against the reference ----------------------------------------------------------------

@pytest.fixture(scope="module")
def sandbox_folders():
    return generate(POPULATION_SIZE, POPULATION_SEED).folders


def published_samples():
    return [samples.registration_folder_sample(), samples.certification_folder_sample()]


def test_read_folder_agrees_on_the_sandbox_population_and_samples(sandbox_folders):
    folders = [*sandbox_folders, *published_samples()]
    for raw in folders:
        assert_same(outcome(folder.read_folder, raw), outcome(reference_folder.read_folder, raw))
        assert_same(folder.read_version(raw), reference_folder.read_version(raw))
    for kind in ("stagiaires", "formations"):
        for raw in folders[:500] + folders[-2:]:
            assert_same(outcome(folder.read_folder, raw, kind), outcome(reference_folder.read_folder, raw, kind))


def test_the_population_reaches_the_fast_paths(sandbox_folders):
    """The comparison above is only worth something if the common cases really occur in it."""
    first = folder.read_folder(sandbox_folders[0])
    assert first.last_update is not None and first.attendee is not None and first.program is not None
    categories = {folder.read_folder(raw).program.category for raw in sandbox_folders[:200]}
    assert categories == {"bilan_competences", "formation"}


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
def test_read_folder_agrees_on_hostile_folders(base, changes, kind):
    raw = with_values(base, changes)
    assert_same(outcome(folder.read_folder, raw, kind), outcome(reference_folder.read_folder, raw, kind))
    assert_same(folder.read_version(raw), reference_folder.read_version(raw))


FOLDER_IDS = [
    "1966755308", 1966755308, 19.0, True, "  42  ", "", " ", "١٢٣", "１２３", "dossier-é", "12 34", "A", "_1", "1:2",
    "a" * 52, "a" * 53, "1" * 52 + " ", "abc\x00", "\ud800", None, ["1"], {"id": 1}, 10**60, -5, "-5", "x.y_z:1-2",
]


@pytest.mark.parametrize("external_id", FOLDER_IDS, ids=repr)
def test_read_folder_agrees_on_folder_numbers(external_id):
    raw = with_values(BASE_FOLDERS[0], [(("externalId",), external_id)])
    assert_same(outcome(folder.read_folder, raw), outcome(reference_folder.read_folder, raw))
    assert_same(folder.read_version(raw), reference_folder.read_version(raw))


@SETTINGS
@given(raw=any_value)
def test_read_folder_agrees_on_anything(raw):
    assert_same(outcome(folder.read_folder, raw), outcome(reference_folder.read_folder, raw))
    assert_same(folder.read_version(raw), reference_folder.read_version(raw))
