"""The Wedof side of the integration.

The HTTP client for the real Wedof API (``https://www.wedof.fr/api``, ``X-Api-Key``), its typed
errors, paging and shared throttle, the webhook signature helpers, event parsing, and the rules
that map a Wedof registration folder onto the BDC data layer. It may import ``bdc``.
"""
