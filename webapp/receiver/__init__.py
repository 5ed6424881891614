"""The Wedof webhook receiver: verify the signature on the raw bytes, store the delivery, enqueue it.

It stays thin on purpose: everything that can be slow or fail for a reason outside the request
(fetching a folder, applying it) happens in the worker, found by the stored event's id.
"""

from webapp.receiver.views import bp

__all__ = ["bp"]
