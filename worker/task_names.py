"""The names of every task, the only part of the worker the web application may import.

The webapp sends tasks by these names (``send_task``) and never imports the code that runs them.
"""

PROCESS_EVENT = "wedof.process_event"
SYNC_CONNECTION = "wedof.sync_connection"
CARRY_OUT_ACTION = "wedof.carry_out_action"
EVALUATE_LIFECYCLE = "wedof.evaluate_lifecycle"
EVALUATE_LIFECYCLES = "wedof.evaluate_lifecycles"
BILL_FOLDER = "wedof.bill_folder"
BILL_FOLDERS = "wedof.bill_folders"
SEND_INVOICE = "wedof.send_invoice"
REGISTER_WEBHOOK = "wedof.register_webhook"
SWEEP_INBOX = "wedof.sweep_inbox"
PURGE_RAW_BODIES = "wedof.purge_raw_bodies"
SCHEDULE_SYNCS = "wedof.schedule_syncs"
CHECK_CONNECTIVITY = "bdc.check_connectivity"
RECONCILE = "bdc.reconcile"
SEND_NOTICES = "bdc.send_notices"
APPLY_RETENTION = "bdc.apply_personal_data_retention"

EVENTS_QUEUE = "events"  # latency-sensitive: webhooks, declarations, maintenance
SYNC_QUEUE = "sync"  # bulk: full and incremental syncs

QUEUE_OF = {
    PROCESS_EVENT: EVENTS_QUEUE,
    CARRY_OUT_ACTION: EVENTS_QUEUE,
    EVALUATE_LIFECYCLE: EVENTS_QUEUE,
    EVALUATE_LIFECYCLES: SYNC_QUEUE,  # bulk: a tenant's enrollments in pages
    # Billing is bulk work, never urgent (the financer pays weeks later): on the sync workers, so a
    # tenant's hundreds of due folders never queue ahead of webhooks (chaos inbox p50 19 s on events).
    BILL_FOLDER: SYNC_QUEUE,
    SEND_INVOICE: SYNC_QUEUE,
    BILL_FOLDERS: SYNC_QUEUE,
    REGISTER_WEBHOOK: EVENTS_QUEUE,
    SWEEP_INBOX: EVENTS_QUEUE,
    PURGE_RAW_BODIES: EVENTS_QUEUE,
    SCHEDULE_SYNCS: EVENTS_QUEUE,
    SYNC_CONNECTION: SYNC_QUEUE,
    CHECK_CONNECTIVITY: EVENTS_QUEUE,
    RECONCILE: SYNC_QUEUE,  # listing reads per state: bulk, never ahead of a webhook
    SEND_NOTICES: EVENTS_QUEUE,
    APPLY_RETENTION: SYNC_QUEUE,  # bulk: a tenant's ended bilans, one beneficiary per transaction
}
