"""Apply Wedof registration folders to the BDC data layer: the one upsert both webhooks and syncs use.

Level-triggered: the folder's state is the truth, whatever event carried it.

- A folder whose ``lastUpdate`` is older than the stored ``Enrollment.wedof_last_update`` changes
  nothing (outcome ``stale``). Equal or newer folders are applied, and a value is only assigned
  when it differs, so re-applying a folder writes nothing (``unchanged``; ``updated_at`` untouched).
- A folder without a readable ``lastUpdate`` has an unknown age: it is applied only when nothing is
  stored yet, or when the stored enrollment has no ``lastUpdate`` either.
- Shared rows (a beneficiary in two folders, a program in many) take the values of the last folder
  applied, in page order; an evaluation or report title names the program as its own folder does.
- A page gives the same rows as its folders applied one by one, in order. When a folder appears
  twice in a page, its newest copy is applied, plus what the older copies would have left behind
  (a completion rate the newest copy no longer reports, history dates, the bilan report).
- ``Beneficiary.status`` follows its enrollments: *completed* when every enrollment that was not
  withdrawn is completed (and there is at least one), else *active*. A status staff set by hand
  (*inactive*, *archived*) is theirs and is never changed here.
- ``User.email`` is unique across the whole database: when another user already holds the address,
  this attendee's user gets NULL and the address is kept in ``custom_fields["wedof_email"]``. The
  check is made before writing; two processes racing for one address can still meet the unique
  constraint, which the caller's transaction retry resolves (the next try sees the holder).

``apply_folders`` loads everything a page needs in a fixed number of queries (one per table, by
external ids), upserts in memory and flushes by dependency level, so the query count does not grow
with the page size. ``apply_folder`` is the same code on a page of one. Neither commits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from bdc.models import (
    Beneficiary,
    BeneficiaryStatus,
    Document,
    DocumentType,
    Enrollment,
    EnrollmentStatus,
    Evaluation,
    EvaluationStatus,
    Program,
    User,
    UserRole,
)
from wedof.mapping import values
from wedof.mapping.folder import KINDS, AttendeeData, FolderData, FolderRejected, ProgramData, read_folder
from wedof.mapping.states import REPORT_STATES

CREATED = "created"
UPDATED = "updated"
UNCHANGED = "unchanged"
STALE = "stale"

EMAIL_OVERFLOW_KEY = "wedof_email"


@dataclass
class ApplyResult:
    external_id: str
    outcome: str  # "created" | "updated" | "unchanged" | "stale"
    enrollment_id: int | None
    beneficiary_id: int | None
    program_id: int | None


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


def apply_folder(session: Session, tenant_id: int, folder: Any, *, kind: str = "all") -> ApplyResult:
    """Apply one folder; raises :class:`FolderRejected` (nothing written) when it cannot be applied."""
    result = apply_folders(session, tenant_id, [folder], kind=kind)[0]
    if isinstance(result, FolderRejected):
        raise result
    return result


def apply_folders(
    session: Session, tenant_id: int, folders: Sequence[Any], *, kind: str = "all"
) -> list[ApplyResult | FolderRejected]:
    """Apply a page of folders; each slot holds its result, or the FolderRejected that stopped only it.

    When one externalId appears more than once, its newest copy is applied (newest ``lastUpdate``;
    a known date beats an unknown one; the later copy wins a tie), together with what the older
    copies would have left had they been applied one by one; the older copies are reported ``stale``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    results: list[ApplyResult | FolderRejected | None] = [None] * len(folders)
    readable: list[tuple[int, FolderData]] = []
    for index, folder in enumerate(folders):
        try:
            readable.append((index, read_folder(folder, kind)))
        except FolderRejected as rejected:
            results[index] = rejected
    copies: dict[str, list[tuple[int, FolderData]]] = defaultdict(list)
    for index, data in readable:
        copies[data.external_id].append((index, data))
    newest = sorted((_newest(group) for group in copies.values()), key=lambda item: item[0])
    if newest:
        page = _Page(
            session, tenant_id, kind, [_Folder(data, copies[data.external_id]) for _, data in newest]
        )
        for (index, _), result in zip(newest, page.apply(), strict=True):
            results[index] = result
        for index, data in readable:
            if results[index] is None:  # an older copy of a folder of this page
                newer = page.results[data.external_id]
                results[index] = ApplyResult(
                    data.external_id, STALE, newer.enrollment_id, newer.beneficiary_id, newer.program_id
                )
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

    def plan(self, stored: Enrollment | None) -> None:
        """Replay the copies against the stored enrollment, as one-by-one application would."""
        held_exists = stored is not None
        held = stored.wedof_last_update if stored is not None else None
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


def _assign(row: Any, **fields: Any) -> bool:
    """Write nothing when every value is already held; else write them all and return True.

    Writing every managed column of a changed row (not only the differing ones) gives all the
    page's updates of a table the same column set, so they go out as one executemany batch.
    """
    if all(getattr(row, name) == value for name, value in fields.items()):
        return False
    for name, value in fields.items():
        setattr(row, name, value)
        flag_modified(row, name)
    return True


class _Page:
    """One page's rows, loaded up front and upserted in memory."""

    def __init__(self, session: Session, tenant_id: int, kind: str, plans: list[_Folder]):
        self.session = session
        self.tenant_id = tenant_id
        self.kind = kind
        self.plans = plans
        self.folders = [plan.data for plan in plans]
        self.results: dict[str, ApplyResult] = {}
        self.beneficiaries: dict[str, Beneficiary] = {}
        self.users: dict[str, User] = {}  # by attendee id
        self.email_holders: dict[str, User] = {}
        self.released_emails: set[str] = set()
        self.programs: dict[str, Program] = {}
        self.enrollments: dict[str, Enrollment] = {}
        self.beneficiary_enrollments: list[Enrollment] = []  # every enrollment of a loaded beneficiary
        self.evaluations: dict[str, Evaluation] = {}
        self.documents: dict[str, Document] = {}
        self._load()
        for plan in plans:
            plan.plan(self.enrollments.get(plan.data.external_id))
        self.fresh = [plan.fresh for plan in plans]
        self.final_statuses = self._final_enrollment_statuses()

    # -- loading: one query per table ------------------------------------------------------------

    def _load(self) -> None:
        session, tenant = self.session, self.tenant_id
        folder_ids = [data.external_id for data in self.folders]
        attendees = [data.attendee for data in self.folders if data.attendee is not None]
        programs = [data.program for data in self.folders if data.program is not None]
        if attendees:
            rows = session.execute(
                select(Beneficiary, User)
                .join(User, Beneficiary.user_id == User.id)
                .where(
                    Beneficiary.tenant_id == tenant,
                    Beneficiary.external_id.in_(sorted({a.external_id for a in attendees})),
                )
            ).all()
            for beneficiary, user in rows:
                self.beneficiaries[beneficiary.external_id] = beneficiary
                self.users[beneficiary.external_id] = user
                if user.email:
                    self.email_holders[user.email] = user
            emails = sorted({a.email for a in attendees if a.email} - set(self.email_holders))
            if emails:
                for user in session.scalars(select(User).where(User.email.in_(emails))):
                    self.email_holders[user.email] = user
        if programs:
            for program in session.scalars(
                select(Program).where(
                    Program.tenant_id == tenant,
                    Program.external_id.in_(sorted({p.external_id for p in programs})),
                )
            ):
                self.programs[program.external_id] = program
        beneficiary_ids = [b.id for b in self.beneficiaries.values()]
        wanted = Enrollment.external_id.in_(folder_ids)
        if beneficiary_ids:
            wanted = or_(wanted, Enrollment.beneficiary_id.in_(beneficiary_ids))
        # FOR UPDATE (PostgreSQL; SQLite serializes writers itself): the stale check below compares
        # against these rows, so a concurrent apply of another version of the folder must wait for
        # our commit and then read it, or an older version committed last would overwrite a newer one.
        locked = select(Enrollment).where(Enrollment.tenant_id == tenant, wanted).order_by(Enrollment.id)
        for enrollment in session.scalars(locked.with_for_update()):
            if enrollment.external_id in folder_ids:
                self.enrollments[enrollment.external_id] = enrollment
            self.beneficiary_enrollments.append(enrollment)
        if self.kind == "all":
            keys = [completion_evaluation_key(i) for i in folder_ids]
            for evaluation in session.scalars(
                select(Evaluation).where(Evaluation.tenant_id == tenant, Evaluation.external_id.in_(keys))
            ):
                self.evaluations[evaluation.external_id] = evaluation
            keys = [bilan_report_key(i) for i in folder_ids]
            for document in session.scalars(
                select(Document).where(Document.tenant_id == tenant, Document.external_id.in_(keys))
            ):
                self.documents[document.external_id] = document

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
            if fresh and self.kind == "all"
        }
        attendee_of = {b.id: external_id for external_id, b in self.beneficiaries.items()}
        statuses: dict[str, list[EnrollmentStatus]] = defaultdict(list)
        for enrollment in self.beneficiary_enrollments:
            if enrollment.external_id not in replaced and enrollment.beneficiary_id in attendee_of:
                statuses[attendee_of[enrollment.beneficiary_id]].append(enrollment.status)
        for data, fresh in zip(self.folders, self.fresh, strict=True):
            if fresh and self.kind == "all" and data.attendee is not None:
                statuses[data.attendee.external_id].append(data.status)
        return statuses

    def apply(self) -> list[ApplyResult]:
        fresh = self.fresh
        created = [False] * len(self.folders)
        changed = [False] * len(self.folders)
        with self.session.no_autoflush:
            # Level 1: users, beneficiaries, programs (no dependency on this page's other rows),
            # from every copy that applies, in page order: who claims an email first depends on it.
            for i, data in self._applied_copies_in_page_order():
                if data.attendee is not None:
                    made, edited = self._upsert_attendee(data.attendee)
                    created[i] |= made and self.kind == "stagiaires"
                    changed[i] |= made or edited
                if data.program is not None:
                    made, edited = self._upsert_program(data.program)
                    created[i] |= made and self.kind == "formations"
                    changed[i] |= made or edited
            self.session.flush()
            if self.kind == "all":
                # Level 2: enrollments need their beneficiary and program ids.
                for i, plan in enumerate(self.plans):
                    if fresh[i]:
                        made, edited = self._upsert_enrollment(plan)
                        created[i] |= made
                        changed[i] |= made or edited
                self.session.flush()
                # Level 3: evaluations and documents need the enrollment id.
                for i, plan in enumerate(self.plans):
                    if fresh[i]:
                        changed[i] |= self._upsert_evaluation(plan)
                        changed[i] |= self._create_report(plan)
                self.session.flush()
        results = [
            self._result(data, fresh[i], created[i], changed[i]) for i, data in enumerate(self.folders)
        ]
        self.results = {result.external_id: result for result in results}
        return results

    def _upsert_attendee(self, attendee: AttendeeData) -> tuple[bool, bool]:
        beneficiary = self.beneficiaries.get(attendee.external_id)
        made = beneficiary is None
        if beneficiary is None:
            user = User(tenant_id=self.tenant_id, role=UserRole.STUDENT, is_active=True)
            beneficiary = Beneficiary(
                tenant_id=self.tenant_id,
                external_id=attendee.external_id,
                status=BeneficiaryStatus.ACTIVE,
                custom_fields={},
            )
            beneficiary.user = user
            self.session.add(beneficiary)
            self.beneficiaries[attendee.external_id] = beneficiary
            self.users[attendee.external_id] = user
        user = self.users[attendee.external_id]
        email, overflow = self._claim_email(user, attendee.email)
        edited = _assign(user, first_name=attendee.first_name, last_name=attendee.last_name, email=email)
        fields = dict(beneficiary.custom_fields or {})
        for key, value in {**attendee.facts, EMAIL_OVERFLOW_KEY: overflow}.items():
            if value is None:
                fields.pop(key, None)
            else:
                fields[key] = value
        status = beneficiary_status_for(self.final_statuses.get(attendee.external_id, []), beneficiary.status)
        edited |= _assign(
            beneficiary,
            phone=attendee.phone,
            birth_date=attendee.birth_date,
            address=attendee.address,
            city=attendee.city,
            postal_code=attendee.postal_code,
            country=attendee.country,
            custom_fields=fields,  # a new dict: JSON columns only notice reassignment
            status=status,
        )
        return made, edited

    def _claim_email(self, user: User, wanted: str | None) -> tuple[str | None, str | None]:
        """The address ``user`` may hold and the one kept aside because another user holds it.

        Updates the page's view of who holds what, so later folders of the page see this claim.
        """
        holder = self.email_holders.get(wanted) if wanted else None
        stored = wanted if holder is None or holder is user else None
        overflow = wanted if wanted and stored is None else None
        current = user.email
        if current == stored:
            return stored, overflow
        if stored is not None and stored in self.released_emails:
            # Another user gave this address up earlier in the page: write that first, so the
            # unique index never sees the address twice within one flush.
            self.session.flush()
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
            program = Program(tenant_id=self.tenant_id, external_id=data.external_id, name=data.name)
            self.session.add(program)
            self.programs[data.external_id] = program
        edited = _assign(
            program,
            name=data.name,
            description=data.description,
            category=data.category,
            duration_hours=data.duration_hours,
            start_date=data.start_date,
            end_date=data.end_date,
        )
        return made, edited

    def _upsert_enrollment(self, plan: _Folder) -> tuple[bool, bool]:
        data = plan.data
        assert data.attendee is not None and data.program is not None  # kind "all" reads both
        beneficiary = self.beneficiaries[data.attendee.external_id]
        program = self.programs[data.program.external_id]
        enrollment = self.enrollments.get(data.external_id)
        made = enrollment is None
        if enrollment is None:
            enrollment = Enrollment(
                tenant_id=self.tenant_id,
                external_id=data.external_id,
                progress=0,
                beneficiary_id=beneficiary.id,
                program_id=program.id,
            )
            self.session.add(enrollment)
            self.enrollments[data.external_id] = enrollment
            self.beneficiary_enrollments.append(enrollment)
        rate = plan.rate_source.completion_rate if plan.rate_source is not None else None
        edited = _assign(
            enrollment,
            beneficiary_id=beneficiary.id,
            program_id=program.id,
            status=data.status,
            wedof_state=data.state,
            wedof_billing_state=data.billing_state,
            wedof_last_update=data.last_update,
            # Absent values keep what we hold: Wedof never forgets a history date, and a null
            # rate means "not reported", not "back to zero".
            progress=enrollment.progress if rate is None else values.whole_percent(rate),
            enrolled_at=plan.enrolled_at or enrollment.enrolled_at,
            completed_at=plan.completed_at or enrollment.completed_at,
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
            evaluation = Evaluation(tenant_id=self.tenant_id, external_id=key, title="")
            self.session.add(evaluation)
            self.evaluations[key] = evaluation
        rate = source.completion_rate
        edited = _assign(
            evaluation,
            beneficiary_id=enrollment.beneficiary_id,
            enrollment_id=enrollment.id,
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
        enrollment = self.enrollments[plan.data.external_id]
        name = " ".join(part for part in (source.attendee.first_name, source.attendee.last_name) if part)
        document = Document(
            tenant_id=self.tenant_id,
            beneficiary_id=enrollment.beneficiary_id,
            enrollment_id=enrollment.id,
            title=f"Rapport de bilan — {name or source.program.name}"[:500],
            type=DocumentType.BILAN_REPORT,
            external_id=key,
            meta={
                "source": "wedof",
                "folder_external_id": source.external_id,
                "wedof_state": source.state,
                "state_date": values.iso(source.report_state_date),
                "permalink": source.permalink,
                "program": source.program.name,
            },
        )
        self.session.add(document)
        self.documents[key] = document
        return True

    def _result(self, data: FolderData, fresh: bool, created: bool, changed: bool) -> ApplyResult:
        enrollment = self.enrollments.get(data.external_id) if self.kind == "all" else None
        beneficiary = self.beneficiaries.get(data.attendee.external_id) if data.attendee else None
        program = self.programs.get(data.program.external_id) if data.program else None
        outcome = STALE if not fresh else CREATED if created else UPDATED if changed else UNCHANGED
        return ApplyResult(
            external_id=data.external_id,
            outcome=outcome,
            enrollment_id=enrollment.id if enrollment is not None else None,
            beneficiary_id=beneficiary.id if beneficiary is not None else None,
            program_id=program.id if program is not None else None,
        )
