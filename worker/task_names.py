"""The names of every task, the only part of the worker the web application may import.

The webapp sends tasks by these names (``send_task``) and never imports the code that runs them.
"""

PROCESS_EVENT = "wedof.process_event"
SYNC_CONNECTION = "wedof.sync_connection"
PUSH_PROGRESS = "wedof.push_progress"
DECLARE_IN_TRAINING = "wedof.declare_in_training"
DECLARE_TERMINATED = "wedof.declare_terminated"
DECLARE_SERVICE_DONE = "wedof.declare_service_done"
REGISTER_WEBHOOK = "wedof.register_webhook"
SWEEP_INBOX = "wedof.sweep_inbox"
PURGE_RAW_BODIES = "wedof.purge_raw_bodies"
SCHEDULE_SYNCS = "wedof.schedule_syncs"

EVENTS_QUEUE = "events"  # latency-sensitive: webhooks, pushes, maintenance
SYNC_QUEUE = "sync"  # bulk: full and incremental syncs

QUEUE_OF = {
    PROCESS_EVENT: EVENTS_QUEUE,
    PUSH_PROGRESS: EVENTS_QUEUE,
    DECLARE_IN_TRAINING: EVENTS_QUEUE,
    DECLARE_TERMINATED: EVENTS_QUEUE,
    DECLARE_SERVICE_DONE: EVENTS_QUEUE,
    REGISTER_WEBHOOK: EVENTS_QUEUE,
    SWEEP_INBOX: EVENTS_QUEUE,
    PURGE_RAW_BODIES: EVENTS_QUEUE,
    SCHEDULE_SYNCS: EVENTS_QUEUE,
    SYNC_CONNECTION: SYNC_QUEUE,
}
