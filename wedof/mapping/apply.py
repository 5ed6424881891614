"""Apply Wedof registration folders to the BDC data layer: the one upsert both webhooks and syncs use.

Level-triggered: the folder's state is the truth, whatever event carried it.

- A folder whose ``lastUpdate`` is older than the stored ``Enrollment.wedof_last_update`` changes
  nothing (outcome ``stale``). Equal or newer folders are applied, and a value is only assigned
  when it differs, so re-applying a folder writes nothing (``unchanged``; ``updated_at`` untouched).
- ``trust_last_update=True`` (syncs): Wedof moves ``lastUpdate`` on every change, so a folder whose
  ``lastUpdate`` equals the stored one is ``unchanged`` without reading or comparing anything else.
  One unlocked SELECT per page finds those; only the others are loaded (and locked) and compared.
  Exception: an attendee whose email was kept aside is compared again, so an address another
  attendee gave up is taken on the next sync, as it would be with the full comparison.
- A folder without a readable ``lastUpdate`` has an unknown age: it is applied only when nothing is
  stored yet, or when the stored enrollment has no ``lastUpdate`` either.
- Shared rows (a beneficiary in two folders, a program in many) take the values of the last folder
  applied, in page order; an evaluation or report title names the program as its own folder does.
  Except a program's session dates: folders of one training action carry different sessions, so
  the program spans them (start = earliest, end = latest date seen). That converges: applying the
  same folders again, in any order, leaves the program as it is.
- A page gives the same rows as its folders applied one by one, in order. When a folder appears
  twice in a page, its newest copy is applied, plus what the older copies would have left behind
  (a completion rate the newest copy no longer reports, history dates, the bilan report).
- ``Beneficiary.status`` follows its enrollments: *completed* when every enrollment that was not
  withdrawn is completed (and there is at least one), else *active*. A status staff set by hand
  (*inactive*, *archived*) is theirs and is never changed here.
- An attendee whose personal data was erased (a :class:`bdc.models.ErasedAttendee` tombstone, read
  once per page) gets its names, email, phone, address, birth date and facts written empty, whatever
  the folder says, and no bilan report; its folders' state, billing and progress apply as usual.
- ``User.email`` is unique across the whole database: when another user already holds the address,
  this attendee's user gets NULL and the address is kept in ``custom_fields["wedof_email"]``. The
  check is made before writing; two processes racing for one address can still meet the unique
  constraint, which the caller's transaction retry resolves (the next try sees the holder).

``apply_folders`` loads everything a page needs in a fixed number of queries (one per table, by
external ids), upserts plain rows in memory and writes them by dependency level with
:mod:`wedof.mapping.bulk`: per table one ``INSERT ... RETURNING id`` and one ``UPDATE``, so the
query count does not grow with the page size and no ORM unit of work is involved. ORM objects of
these tables the caller's session already holds are expired afterwards, so they reload what was
written. ``apply_folder`` is the same code on a page of one. Neither commits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from typing import Any

from sqlalchemy import Select, bindparam, or_, select, update
from sqlalchemy.orm import Session

from bdc.models import (
    Beneficiary,
    BeneficiaryStatus,
    Document,
    DocumentType,
    Enrollment,
    EnrollmentStatus,
    ErasedAttendee,
    Evaluation,
    EvaluationStatus,
    Program,
    ProgramStatus,
    SyncKind,
    User,
    UserRole,
)
from bdc.types import utcnow
from wedof.mapping import bulk, values
from wedof.mapping.folder import (
    KINDS,
    AttendeeData,
    FolderData,
    FolderReading,
    FolderRejected,
    ProgramData,
    read_folders,
    read_or_reject,
)
from wedof.mapping.states import REPORT_STATES

CREATED = "created"
UPDATED = "updated"
UNCHANGED = "unchanged"
STALE = "stale"

EMAIL_OVERFLOW_KEY = "wedof_email"

MODELS = (User, Beneficiary, Program, Enrollment, Evaluation, Document)
USERS, BENEFICIARIES, PROGRAMS, ENROLLMENTS, EVALUATIONS, DOCUMENTS = (model.__table__ for model in MODELS)

# The columns this module writes, per table (every changed row writes all of them: one batch).
USER_FIELDS = ("first_name", "last_name", "email")
BENEFICIARY_FIELDS = (
    "phone",
    "birth_date",
    "address",
    "city",
    "postal_code",
    "country",
    "custom_fields",
    "status",
)
PROGRAM_FIELDS = ("name", "description", "category", "duration_hours", "start_date", "end_date")
ENROLLMENT_FIELDS = (
    "beneficiary_id",
    "program_id",
    "status",
    "wedof_state",
    "wedof_billing_state",
    "wedof_last_update",
    "progress",
    "enrolled_at",
    "completed_at",
    "in_training_at",
    "session_start_date",
    "session_end_date",
    "indicative_duration_hours",
    "wedof_amounts",
    "wedof_bill_number",
)
EVALUATION_FIELDS = ("beneficiary_id", "enrollment_id", "title", "score", "status")

Row = dict[str, Any]  # one table row as plain values; a stored row has its "id"
ERASED = ErasedAttendee.__table__


@dataclass
class ApplyResult:
    external_id: str
    outcome: str  # "created" | "updated" | "unchanged" | "stale"
    enrollment_id: int | None
    beneficiary_id: int | None
    program_id: int | None
    erased: bool = False  # the attendee's personal data was erased: its fields were left empty


def completion_evaluation_key(folder_external_id: str) -> str:
    return f"{folder_external_id}:completion"


def bilan_report_key(folder_external_id: str) -> str:
    return f"{folder_external_id}:bilan-report"


def beneficiary_status_for(
    statuses: Iterable[EnrollmentStatus], current: BeneficiaryStatus | None
) -> BeneficiaryStatus:
    """Completed when every enrollment not withdrawn is completed (at least one), else active."""
    if current in (BeneficiaryStatus.INACTIVE, BeneficiaryStatus.ARCHIVED):
        return current
    kept = [status for status in statuses if status != EnrollmentStatus.WITHDRAWN]
    if kept and all(status == EnrollmentStatus.COMPLETED for status in kept):
        return BeneficiaryStatus.COMPLETED
    return BeneficiaryStatus.ACTIVE


def apply_folder(
    session: Session, tenant_id: int, folder: Any, *, kind: SyncKind = SyncKind.ALL, trust_last_update: bool = False
) -> ApplyResult:
    """Apply one folder; raises :class:`FolderRejected` (nothing written) when it cannot be applied."""
    result = apply_folders(session, tenant_id, [folder], kind=kind, trust_last_update=trust_last_update)[0]
    if isinstance(result, FolderRejected):
        raise result
    return result


def apply_folders(
    session: Session,
    tenant_id: int,
    folders: Sequence[Any],
    *,
    kind: SyncKind = SyncKind.ALL,
    trust_last_update: bool = False,
    readings: Sequence[FolderReading] | None = None,
) -> list[ApplyResult | FolderRejected]:
    """Apply a page of folders; each slot holds its result, or the FolderRejected that stopped only it.

    When one externalId appears more than once, its newest copy is applied (newest ``lastUpdate``;
    a known date beats an unknown one; the later copy wins a tie), together with what the older
    copies would have left had they been applied one by one; the older copies are reported ``stale``.
    With ``trust_last_update``, a folder whose every copy has the stored ``lastUpdate`` is
    ``unchanged`` at the cost of one query for the whole page (see the module docstring).
    ``readings`` (from :func:`read_folders` with the same ``kind``) saves reading the folders here.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    if readings is None:
        readings = read_folders(folders, kind, in_full=not trust_last_update)
    elif len(readings) != len(folders):
        raise ValueError(f"{len(readings)} readings for {len(folders)} folders")
    results: list[ApplyResult | FolderRejected | None] = [None] * len(folders)
    if trust_last_update and folders:
        session.flush()  # the caller's pending ORM changes go first, as an ORM query would autoflush them
        versions = [reading.version for reading in readings]
        for index, result in _same_version(session, tenant_id, kind, versions).items():
            results[index] = result
    readable: list[tuple[int, FolderData]] = []
    for index, reading in enumerate(readings):
        if results[index] is not None:
            continue
        data = reading.data if reading.data is not None else read_or_reject(folders[index], kind)
        if isinstance(data, FolderRejected):
            results[index] = data
        else:
            readable.append((index, data))
    copies: dict[str, list[tuple[int, FolderData]]] = defaultdict(list)
    for index, data in readable:
        copies[data.external_id].append((index, data))
    newest = sorted((_newest(group) for group in copies.values()), key=lambda item: item[0])
    if not newest:
        return results  # type: ignore[return-value]  # every slot is filled by now
    session.flush()
    page = _Page(session, tenant_id, kind, [_Folder(data, copies[data.external_id]) for _, data in newest])
    page_results = page.apply()
    _expire_mapped_objects(session)
    newest_index = {data.external_id: index for index, data in newest}
    for index, data in readable:
        result = page_results[data.external_id]
        if index != newest_index[data.external_id]:  # an older copy of a folder of this page
            result = ApplyResult(
                data.external_id, STALE, result.enrollment_id, result.beneficiary_id, result.program_id, result.erased
            )
        results[index] = result
    return results  # type: ignore[return-value]  # every slot is filled by now


def _newest(group: list[tuple[int, FolderData]]) -> tuple[int, FolderData]:
    """The copy applied last when the copies are applied one by one: none is newer than it."""
    best = group[0]
    for index, data in group[1:]:
        if not _older(data.last_update, best[1].last_update):
            best = (index, data)
    return best


def _older(candidate: datetime | None, held: datetime | None) -> bool:
    """Is a folder dated ``candidate`` stale against ``held``? An unknown date loses to a known one."""
    if candidate is None:
        return held is not None
    return held is not None and candidate < held


def _earliest(held: date | None, seen: date | None) -> date | None:
    return held if seen is None else seen if held is None else min(held, seen)


def _latest(held: date | None, seen: date | None) -> date | None:
    return held if seen is None else seen if held is None else max(held, seen)


def _same_version(
    session: Session, tenant_id: int, kind: str, versions: Sequence[tuple[str, datetime | None, str | None] | None]
) -> dict[int, ApplyResult]:
    """The page slots holding a folder we already hold at its ``lastUpdate``: ``unchanged``.

    Only the externalId, lastUpdate and attendee email are read (:func:`read_version`); a folder
    whose copies in the page do not all carry one clean date is left to the full reading. Not
    locked: nothing is written for these folders. The folders that do need work are read again by
    :class:`_Page` under a row lock, which is where a concurrent writer's version is waited for.
    An attendee whose address was kept aside is unchanged only while another user still holds it.
    """
    slots: dict[str, list[int]] = defaultdict(list)
    seen: dict[str, set] = defaultdict(set)  # the versions of each folder's copies in the page
    for index, version in enumerate(versions):
        if version is not None:
            slots[version[0]].append(index)
            seen[version[0]].add(version[1:])
    held: dict[str, tuple[datetime, str | None]] = {}  # one clean version in every copy
    for key, found in seen.items():
        if len(found) == 1:
            last_update, email = found.pop()
            if last_update is not None:
                held[key] = (last_update, email)
    if not held:
        return {}
    query = _same_version_query(session.get_bind().dialect.name)
    rows = session.execute(query, {"tenant_id": tenant_id, "keys": sorted(held)}).all()
    same: dict[str, ApplyResult] = {}
    for external_id, enrollment_id, beneficiary_id, program_id, last_update, overflow, holder_id in rows:
        if last_update != held[external_id][0]:
            continue
        if overflow is not None and kind != SyncKind.FORMATIONS and (held[external_id][1] != overflow or holder_id is None):
            continue  # the attendee wants another address now, or the one kept aside is free: compare
        same[external_id] = ApplyResult(
            external_id,
            UNCHANGED,
            enrollment_id if kind == SyncKind.ALL else None,
            beneficiary_id if kind != SyncKind.FORMATIONS else None,
            program_id if kind != SyncKind.STAGIAIRES else None,
        )
    results: dict[int, ApplyResult] = {}
    for external_id, result in same.items():
        *older, last = slots[external_id]
        results[last] = result
        for index in older:  # an older copy in the page, as in a one-by-one application
            results[index] = ApplyResult(
                external_id, STALE, result.enrollment_id, result.beneficiary_id, result.program_id
            )
    return results


@cache
def _same_version_query(dialect_name: str) -> Select:
    """Each folder's stored enrollment version, and who holds the address its attendee kept aside.

    Built once per dialect (the keys are a parameter): it runs for every page of every sync.
    """
    holders = USERS.alias("holder")  # whoever holds the address an attendee's user could not take
    e, b, holder = ENROLLMENTS.c, BENEFICIARIES.c, holders.c
    kept_aside = b.custom_fields[EMAIL_OVERFLOW_KEY].as_string()
    return (
        select(e.external_id, e.id, e.beneficiary_id, e.program_id, e.wedof_last_update, kept_aside, holder.id)
        .join_from(ENROLLMENTS, BENEFICIARIES, b.id == e.beneficiary_id)
        .outerjoin(holders, holder.email == kept_aside)
        .where(e.tenant_id == bindparam("tenant_id"), bulk.among(dialect_name, e.external_id, "keys"))
    )


@dataclass(frozen=True)
class _Lookups:
    """What a page loads, one query per table, built once per dialect (keys are parameters)."""

    attendees: Select  # beneficiaries with their user, by attendee id
    email_holders: Select  # users holding the addresses the page's attendees want
    programs: Select
    enrollments: Select  # the page's folders and every enrollment of its attendees, locked
    evaluations: Select
    documents: Select
    erased: Select  # the page's attendees whose personal data was erased (privacy tombstones)


@cache
def _lookups(dialect_name: str) -> _Lookups:
    def among(column, name: str = "keys"):
        return bulk.among(dialect_name, column, name)

    tenant = bindparam("tenant_id")
    b, u, p, e, v, d = (table.c for table in (BENEFICIARIES, USERS, PROGRAMS, ENROLLMENTS, EVALUATIONS, DOCUMENTS))
    return _Lookups(
        attendees=select(b.id, b.user_id, b.external_id, *(b[n] for n in BENEFICIARY_FIELDS))
        .add_columns(*(u[n] for n in USER_FIELDS))
        .join_from(BENEFICIARIES, USERS, b.user_id == u.id)
        .where(b.tenant_id == tenant, among(b.external_id)),
        email_holders=select(u.id, *(u[n] for n in USER_FIELDS)).where(among(u.email)),
        programs=select(p.id, p.external_id, *(p[n] for n in PROGRAM_FIELDS)).where(
            p.tenant_id == tenant, among(p.external_id)
        ),
        # FOR UPDATE (PostgreSQL; SQLite serializes writers itself): the stale check compares
        # against these rows, so a concurrent apply of another version of the folder must wait for
        # our commit and then read it, or an older version committed last would overwrite a newer one.
        enrollments=select(e.id, e.external_id, *(e[n] for n in ENROLLMENT_FIELDS))
        .where(e.tenant_id == tenant, or_(among(e.external_id), among(e.beneficiary_id, "beneficiary_ids")))
        .order_by(e.id)
        .with_for_update(),
        evaluations=select(v.id, v.external_id, *(v[n] for n in EVALUATION_FIELDS)).where(
            v.tenant_id == tenant, among(v.external_id)
        ),
        documents=select(d.external_id).where(d.tenant_id == tenant, among(d.external_id)),
        erased=select(ERASED.c.attendee_id).where(ERASED.c.tenant_id == tenant, among(ERASED.c.attendee_id)),
    )


def _expire_mapped_objects(session: Session) -> None:
    """ORM objects of the written tables the session holds reload on next access: Core wrote under them."""
    for instance in list(session.identity_map.values()):
        if isinstance(instance, MODELS):
            session.expire(instance)


@dataclass
class _Folder:
    """A folder of the page: its newest copy, all its copies, and what applying them leaves behind."""

    data: FolderData
    copies: list[tuple[int, FolderData]]  # (position in the page, copy), in page order
    applied: list[tuple[int, FolderData]] = field(default_factory=list)
    fresh: bool = True
    rate_source: FolderData | None = None  # the last applied copy reporting a completion rate
    report_source: FolderData | None = None  # the first applied copy in an end state
    enrolled_at: datetime | None = None
    completed_at: datetime | None = None
    in_training_at: datetime | None = None

    def plan(self, stored: Row | None) -> None:
        """Replay the copies against the stored enrollment, as one-by-one application would."""
        held_exists = stored is not None
        held = stored["wedof_last_update"] if stored is not None else None
        for index, copy in self.copies:
            if held_exists and _older(copy.last_update, held):
                continue
            self.applied.append((index, copy))
            held_exists, held = True, copy.last_update
        self.fresh = bool(self.applied)
        for _, copy in self.applied:
            if copy.completion_rate is not None:
                self.rate_source = copy
            if self.report_source is None and copy.state in REPORT_STATES:
                self.report_source = copy
            self.enrolled_at = copy.enrolled_at or self.enrolled_at
            self.completed_at = copy.completed_at or self.completed_at
            self.in_training_at = copy.in_training_at or self.in_training_at


class _Table:
    """One table's writes for the page: new rows (inserted in order) and stored rows that changed."""

    def __init__(self, table: Any, fields: tuple[str, ...]):
        self.table = table
        self.fields = fields  # the columns a changed row writes
        self.new: list[Row] = []
        self.changed: dict[int, Row] = {}

    def add(self, row: Row) -> Row:
        self.new.append(row)
        return row

    def assign(self, row: Row, **fields: Any) -> bool:
        """Write nothing when every value is already held; else take them all and return True."""
        if all(row[name] == value for name, value in fields.items()):
            return False
        row.update(fields)
        if "id" in row:
            self.changed[row["id"]] = row
        return True

    def write_changes(self, session: Session, now: datetime) -> None:
        """One UPDATE for every changed row; each writes all ``fields``, so they batch together."""
        bulk.update_rows(session, self.table, self.fields, list(self.changed.values()), now)
        self.changed.clear()

    def write_new(self, session: Session, now: datetime) -> None:
        """One INSERT for the new rows; each gets its id."""
        ids = bulk.insert_rows(session, self.table, self.new, now)
        for row, row_id in zip(self.new, ids, strict=True):
            row["id"] = row_id
        self.new.clear()


class _Page:
    """One page's rows, loaded up front as plain values, upserted in memory, written level by level."""

    def __init__(self, session: Session, tenant_id: int, kind: str, plans: list[_Folder]):
        self.session = session
        self.tenant_id = tenant_id
        self.kind = kind
        self.plans = plans
        self.folders = [plan.data for plan in plans]
        self.folder_ids = {data.external_id for data in self.folders}
        self.now = utcnow()
        self.beneficiaries: dict[str, Row] = {}
        self.users: dict[str, Row] = {}  # by attendee id
        self.email_holders: dict[str, Row] = {}
        self.stored_emails: dict[int, str] = {}  # user id -> the address the database holds now
        self.released_emails: set[str] = set()
        self.reclaimed = False  # an address given up in this page is taken by another user
        self.programs: dict[str, Row] = {}
        self.enrollments: dict[str, Row] = {}
        self.beneficiary_enrollments: list[Row] = []  # every enrollment of a loaded beneficiary
        self.evaluations: dict[str, Row] = {}
        self.documents: set[str] = set()
        self.erased: set[str] = set()  # attendee ids whose personal fields are written empty, never back
        self.user_rows = _Table(USERS, USER_FIELDS)
        self.beneficiary_rows = _Table(BENEFICIARIES, BENEFICIARY_FIELDS)
        self.program_rows = _Table(PROGRAMS, PROGRAM_FIELDS)
        self.enrollment_rows = _Table(ENROLLMENTS, ENROLLMENT_FIELDS)
        self.evaluation_rows = _Table(EVALUATIONS, EVALUATION_FIELDS)
        self.document_rows = _Table(DOCUMENTS, ())
        self._load()
        for plan in plans:
            plan.plan(self.enrollments.get(plan.data.external_id))
        self.fresh = [plan.fresh for plan in plans]
        self.final_statuses = self._final_enrollment_statuses()

    # -- loading: one query per table ------------------------------------------------------------

    def _load(self) -> None:
        session, tenant = self.session, self.tenant_id
        lookups = _lookups(session.get_bind().dialect.name)
        folder_ids = sorted(self.folder_ids)
        attendees = [data.attendee for data in self.folders if data.attendee is not None]
        programs = [data.program for data in self.folders if data.program is not None]
        if attendees:
            keys = sorted({a.external_id for a in attendees})
            for row in session.execute(lookups.attendees, {"tenant_id": tenant, "keys": keys}).all():
                beneficiary = row._asdict()  # the two column sets share no name
                user = {"id": beneficiary["user_id"], **{n: beneficiary.pop(n) for n in USER_FIELDS}}
                self.beneficiaries[beneficiary["external_id"]] = beneficiary
                self._hold(user)
                self.users[beneficiary["external_id"]] = user
            emails = sorted({a.email for a in attendees if a.email} - set(self.email_holders))
            if emails:
                for row in session.execute(lookups.email_holders, {"keys": emails}).all():
                    self._hold(row._asdict())
        if programs:
            keys = sorted({g.external_id for g in programs})
            for row in session.execute(lookups.programs, {"tenant_id": tenant, "keys": keys}).all():
                self.programs[row.external_id] = row._asdict()
        beneficiary_ids = sorted(row["id"] for row in self.beneficiaries.values())
        params = {"tenant_id": tenant, "keys": folder_ids, "beneficiary_ids": beneficiary_ids}
        for row in session.execute(lookups.enrollments, params).all():
            enrollment = row._asdict()
            if enrollment["external_id"] in self.folder_ids:
                self.enrollments[enrollment["external_id"]] = enrollment
            self.beneficiary_enrollments.append(enrollment)
        if attendees:
            # Read once the enrollments are locked: an erasure takes the same locks, so either it
            # committed before this read (its tombstone is seen) or it waits and overwrites this page.
            keys = sorted({a.external_id for a in attendees})
            self.erased = set(session.scalars(lookups.erased, {"tenant_id": tenant, "keys": keys}))
        if self.kind == SyncKind.ALL:
            keys = [completion_evaluation_key(i) for i in folder_ids]
            for row in session.execute(lookups.evaluations, {"tenant_id": tenant, "keys": keys}).all():
                self.evaluations[row.external_id] = row._asdict()
            keys = [bilan_report_key(i) for i in folder_ids]
            self.documents = set(session.scalars(lookups.documents, {"tenant_id": tenant, "keys": keys}))

    def _hold(self, user: Row) -> None:
        """Note a loaded user and the address it holds in the database."""
        if user["email"]:
            self.email_holders[user["email"]] = user
            self.stored_emails[user["id"]] = user["email"]

    # -- applying ------------------------------------------------------------------------------------

    def _applied_copies_in_page_order(self) -> list[tuple[int, FolderData]]:
        """(plan number, copy) for every copy one-by-one application would apply, in page order."""
        copies = [(index, i, copy) for i, plan in enumerate(self.plans) for index, copy in plan.applied]
        return [(i, copy) for _, i, copy in sorted(copies, key=lambda item: item[0])]

    def _final_enrollment_statuses(self) -> dict[str, list[EnrollmentStatus]]:
        """Each page attendee's enrollment statuses as they will stand once the page is applied.

        Known up front (this page's fresh folders replace what is stored), so each beneficiary's
        status is written together with its other fields, in one statement.
        """
        replaced = {
            data.external_id
            for data, fresh in zip(self.folders, self.fresh, strict=True)
            if fresh and self.kind == SyncKind.ALL
        }
        attendee_of = {row["id"]: external_id for external_id, row in self.beneficiaries.items()}
        statuses: dict[str, list[EnrollmentStatus]] = defaultdict(list)
        for enrollment in self.beneficiary_enrollments:
            if enrollment["external_id"] not in replaced and enrollment["beneficiary_id"] in attendee_of:
                statuses[attendee_of[enrollment["beneficiary_id"]]].append(enrollment["status"])
        for data, fresh in zip(self.folders, self.fresh, strict=True):
            if fresh and self.kind == SyncKind.ALL and data.attendee is not None:
                statuses[data.attendee.external_id].append(data.status)
        return statuses

    def apply(self) -> dict[str, ApplyResult]:
        fresh = self.fresh
        created = [False] * len(self.folders)
        changed = [False] * len(self.folders)
        # Level 1: users, beneficiaries, programs (no dependency on this page's other rows),
        # from every copy that applies, in page order: who claims an email first depends on it.
        for i, data in self._applied_copies_in_page_order():
            if data.attendee is not None:
                made, edited = self._upsert_attendee(data.attendee)
                created[i] |= made and self.kind == SyncKind.STAGIAIRES
                changed[i] |= made or edited
            if data.program is not None:
                made, edited = self._upsert_program(data.program)
                created[i] |= made and self.kind == SyncKind.FORMATIONS
                changed[i] |= made or edited
        self._write_people_and_programs()
        if self.kind == SyncKind.ALL:
            # Level 2: enrollments need their beneficiary and program ids.
            for i, plan in enumerate(self.plans):
                if fresh[i]:
                    made, edited = self._upsert_enrollment(plan)
                    created[i] |= made
                    changed[i] |= made or edited
            self.enrollment_rows.write_changes(self.session, self.now)
            self.enrollment_rows.write_new(self.session, self.now)
            # Level 3: evaluations and documents need the enrollment id.
            for i, plan in enumerate(self.plans):
                if fresh[i]:
                    changed[i] |= self._upsert_evaluation(plan)
                    changed[i] |= self._create_report(plan)
            for table in (self.evaluation_rows, self.document_rows):
                table.write_changes(self.session, self.now)
                table.write_new(self.session, self.now)
        results = [
            self._result(data, fresh[i], created[i], changed[i]) for i, data in enumerate(self.folders)
        ]
        return {result.external_id: result for result in results}

    def _write_people_and_programs(self) -> None:
        session, now = self.session, self.now
        if self.reclaimed:
            # An address moves between two stored users: clear every address given up first, so
            # the unique index never sees one twice, whatever order the updates below run in.
            released = [
                {"row_id": user_id}
                for user_id, email in self.stored_emails.items()
                if user_id in self.user_rows.changed and self.user_rows.changed[user_id]["email"] != email
            ]
            session.execute(
                update(USERS).where(USERS.c.id == bindparam("row_id")).values(email=None), released
            )
        self.user_rows.write_changes(session, now)
        self.user_rows.write_new(session, now)
        for external_id, beneficiary in self.beneficiaries.items():
            if "id" not in beneficiary:
                beneficiary["user_id"] = self.users[external_id]["id"]
        for table in (self.beneficiary_rows, self.program_rows):
            table.write_changes(session, now)
            table.write_new(session, now)

    def _upsert_attendee(self, attendee: AttendeeData) -> tuple[bool, bool]:
        if attendee.external_id in self.erased:
            attendee = _without_personal_data(attendee)  # written empty: what was loaded may predate the erasure
        beneficiary = self.beneficiaries.get(attendee.external_id)
        made = beneficiary is None
        if beneficiary is None:
            user = self.user_rows.add(
                {
                    "tenant_id": self.tenant_id,
                    "role": UserRole.STUDENT,
                    "is_active": True,
                    **dict.fromkeys(USER_FIELDS),
                }
            )
            beneficiary = self.beneficiary_rows.add(
                {
                    "tenant_id": self.tenant_id,
                    "external_id": attendee.external_id,
                    "user_id": None,  # known once the user is written
                    **dict.fromkeys(BENEFICIARY_FIELDS),
                    "status": BeneficiaryStatus.ACTIVE,
                    "custom_fields": {},
                }
            )
            self.beneficiaries[attendee.external_id] = beneficiary
            self.users[attendee.external_id] = user
        user = self.users[attendee.external_id]
        email, overflow = self._claim_email(user, attendee.email)
        edited = self.user_rows.assign(
            user, first_name=attendee.first_name, last_name=attendee.last_name, email=email
        )
        fields = dict(beneficiary["custom_fields"] or {})
        for key, value in {**attendee.facts, EMAIL_OVERFLOW_KEY: overflow}.items():
            if value is None:
                fields.pop(key, None)
            else:
                fields[key] = value
        status = beneficiary_status_for(
            self.final_statuses.get(attendee.external_id, []), beneficiary["status"]
        )
        edited |= self.beneficiary_rows.assign(
            beneficiary,
            phone=attendee.phone,
            birth_date=attendee.birth_date,
            address=attendee.address,
            city=attendee.city,
            postal_code=attendee.postal_code,
            country=attendee.country,
            custom_fields=fields,
            status=status,
        )
        return made, edited

    def _claim_email(self, user: Row, wanted: str | None) -> tuple[str | None, str | None]:
        """The address ``user`` may hold and the one kept aside because another user holds it.

        Updates the page's view of who holds what, so later folders of the page see this claim.
        """
        holder = self.email_holders.get(wanted) if wanted else None
        stored = wanted if holder is None or holder is user else None
        overflow = wanted if wanted and stored is None else None
        current = user["email"]
        if current == stored:
            return stored, overflow
        if stored is not None and stored in self.released_emails:
            self.reclaimed = True  # written in two steps, see _write_people_and_programs
        if current is not None and self.email_holders.get(current) is user:
            del self.email_holders[current]
            self.released_emails.add(current)
        if stored is not None:
            self.email_holders[stored] = user
        return stored, overflow

    def _upsert_program(self, data: ProgramData) -> tuple[bool, bool]:
        program = self.programs.get(data.external_id)
        made = program is None
        if program is None:
            program = self.program_rows.add(
                {
                    "tenant_id": self.tenant_id,
                    "external_id": data.external_id,
                    "status": ProgramStatus.ACTIVE,
                    **dict.fromkeys(PROGRAM_FIELDS),
                }
            )
            self.programs[data.external_id] = program
        edited = self.program_rows.assign(
            program,
            name=data.name,
            description=data.description,
            category=data.category,
            duration_hours=data.duration_hours,
            # The span of the sessions seen: folders of one action carry different sessions, and
            # taking each folder's dates would rewrite the program on every page.
            start_date=_earliest(program["start_date"], data.start_date),
            end_date=_latest(program["end_date"], data.end_date),
        )
        return made, edited

    def _upsert_enrollment(self, plan: _Folder) -> tuple[bool, bool]:
        data = plan.data
        assert data.attendee is not None and data.program is not None  # kind "all" reads both
        beneficiary_id = self.beneficiaries[data.attendee.external_id]["id"]
        program_id = self.programs[data.program.external_id]["id"]
        enrollment = self.enrollments.get(data.external_id)
        made = enrollment is None
        if enrollment is None:
            enrollment = self.enrollment_rows.add(
                {
                    "tenant_id": self.tenant_id,
                    "external_id": data.external_id,
                    **dict.fromkeys(ENROLLMENT_FIELDS),
                }
            )
            enrollment["progress"] = 0
            self.enrollments[data.external_id] = enrollment
            self.beneficiary_enrollments.append(enrollment)
        rate = plan.rate_source.completion_rate if plan.rate_source is not None else None
        edited = self.enrollment_rows.assign(
            enrollment,
            beneficiary_id=beneficiary_id,
            program_id=program_id,
            status=data.status,
            wedof_state=data.state,
            wedof_billing_state=data.billing_state,
            wedof_last_update=data.last_update,
            # Absent values keep what we hold: Wedof never forgets a history date, and a null
            # rate means "not reported", not "back to zero".
            progress=enrollment["progress"] if rate is None else values.whole_percent(rate),
            enrolled_at=plan.enrolled_at or enrollment["enrolled_at"],
            completed_at=plan.completed_at or enrollment["completed_at"],
            in_training_at=plan.in_training_at or enrollment["in_training_at"],
            # This folder's own session (the program spans all of its folders' sessions).
            session_start_date=data.program.start_date,
            session_end_date=data.program.end_date,
            indicative_duration_hours=data.program.duration_hours,
            wedof_amounts=data.amounts or enrollment["wedof_amounts"],
            wedof_bill_number=data.bill_number,
        )
        return made, edited

    def _upsert_evaluation(self, plan: _Folder) -> bool:
        source = plan.rate_source
        if source is None or source.completion_rate is None or source.program is None:
            return False
        enrollment = self.enrollments[plan.data.external_id]
        key = completion_evaluation_key(plan.data.external_id)
        evaluation = self.evaluations.get(key)
        made = evaluation is None
        if evaluation is None:
            evaluation = self.evaluation_rows.add(
                {"tenant_id": self.tenant_id, "external_id": key, **dict.fromkeys(EVALUATION_FIELDS)}
            )
            self.evaluations[key] = evaluation
        rate = source.completion_rate
        edited = self.evaluation_rows.assign(
            evaluation,
            beneficiary_id=enrollment["beneficiary_id"],
            enrollment_id=enrollment["id"],
            title=f"Taux de réalisation — {source.program.name}"[:500],
            score=rate,
            status=EvaluationStatus.COMPLETED if rate == 100 else EvaluationStatus.IN_PROGRESS,
        )
        return made or edited

    def _create_report(self, plan: _Folder) -> bool:
        """The bilan report, created once when the folder first reaches an end state; never touched again.

        Its title and facts are those of the folder copy that reached the end state.
        """
        source = plan.report_source
        key = bilan_report_key(plan.data.external_id)
        if source is None or source.attendee is None or source.program is None or key in self.documents:
            return False
        if source.attendee.external_id in self.erased:
            return False  # its documents were erased with the person: none is made again
        enrollment = self.enrollments[plan.data.external_id]
        name = " ".join(part for part in (source.attendee.first_name, source.attendee.last_name) if part)
        self.document_rows.add(
            {
                "tenant_id": self.tenant_id,
                "beneficiary_id": enrollment["beneficiary_id"],
                "enrollment_id": enrollment["id"],
                "title": f"Rapport de bilan — {name or source.program.name}"[:500],
                "type": DocumentType.BILAN_REPORT,
                "external_id": key,
                "metadata": {
                    "source": "wedof",
                    "folder_external_id": source.external_id,
                    "wedof_state": source.state,
                    "state_date": values.iso(source.report_state_date),
                    "permalink": source.permalink,
                    "program": source.program.name,
                },
            }
        )
        self.documents.add(key)
        return True

    def _result(self, data: FolderData, fresh: bool, created: bool, changed: bool) -> ApplyResult:
        enrollment = self.enrollments.get(data.external_id) if self.kind == SyncKind.ALL else None
        beneficiary = self.beneficiaries.get(data.attendee.external_id) if data.attendee else None
        program = self.programs.get(data.program.external_id) if data.program else None
        outcome = STALE if not fresh else CREATED if created else UPDATED if changed else UNCHANGED
        return ApplyResult(
            external_id=data.external_id,
            outcome=outcome,
            enrollment_id=enrollment["id"] if enrollment is not None else None,
            beneficiary_id=beneficiary["id"] if beneficiary is not None else None,
            program_id=program["id"] if program is not None else None,
            erased=data.attendee is not None and data.attendee.external_id in self.erased,
        )


def _without_personal_data(attendee: AttendeeData) -> AttendeeData:
    """The attendee with every personal field empty and every fact removed (None removes the key)."""
    return AttendeeData(external_id=attendee.external_id, first_name=None, last_name=None, email=None, phone=None,
                        birth_date=None, address=None, city=None, postal_code=None, country=None,
                        facts=dict.fromkeys(attendee.facts))
