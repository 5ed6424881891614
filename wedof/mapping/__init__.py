"""Wedof registration folder → BDC data layer: the status table and the one upsert everyone calls.

``apply_folder(session, tenant_id, folder, kind=...)`` for one webhook event,
``apply_folders(session, tenant_id, folders, kind=..., trust_last_update=False)`` for a sync page
(syncs pass ``trust_last_update=True``: a folder held at its ``lastUpdate`` is ``unchanged`` without
reading anything else, see :mod:`wedof.mapping.apply`). Neither commits: the
caller owns the transaction. Errors: :class:`FolderRejected` is permanent (nothing was written;
record the reason, do not retry); a database error (``IntegrityError`` from a concurrent writer,
``OperationalError``) is transient: roll back and retry the whole unit, the upsert is idempotent.
"""

from wedof.mapping.apply import ApplyResult, apply_folder, apply_folders, beneficiary_status_for
from wedof.mapping.folder import KINDS, FolderData, FolderReading, FolderRejected, read_folder, read_folders
from wedof.mapping.states import (
    BILLING_STATES,
    DECLARATIONS,
    ENROLLMENT_STATUS_BY_STATE,
    FOLDER_STATES,
    PROGRESS_ALLOWED_STATES,
    REPORT_STATES,
    Declaration,
    enrollment_status_for,
)

__all__ = [
    "BILLING_STATES",
    "DECLARATIONS",
    "Declaration",
    "ENROLLMENT_STATUS_BY_STATE",
    "FOLDER_STATES",
    "PROGRESS_ALLOWED_STATES",
    "REPORT_STATES",
    "enrollment_status_for",
    "FolderRejected",
    "FolderData",
    "read_folder",
    "FolderReading",
    "read_folders",
    "KINDS",
    "ApplyResult",
    "apply_folder",
    "apply_folders",
    "beneficiary_status_for",
]
