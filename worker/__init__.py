"""The Celery side: the Celery app, its tasks and the beat schedule.

Workers apply Wedof events and full syncs to the data layer, push progress back to Wedof, and
sweep the inbox for events that were stored but never processed. Tasks take ids, never payloads,
so any of them can be re-applied from Flower or the admin API. It may import ``bdc`` and ``wedof``.
"""
