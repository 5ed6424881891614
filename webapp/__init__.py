"""The Flask web application: webhook receiver, admin API and integration page.

The receiver only verifies a delivery's signature, stores it durably and enqueues its processing
by task *name*; it never runs worker code. The admin API and the integration page read the same
data layer and send tasks by name too. It may import ``bdc`` and ``wedof``.
"""
