"""Child process for the throttle tests: calls through one shared RedisThrottle for a while.

``python -m tests.wedof.throttle_worker REDIS_URL KEY RATE BURST SECONDS [API_URL API_KEY]``
prints a JSON list of grant times (seconds, Redis clock). With an API URL, every grant is spent
on a real ``GET /users/me`` through WedofClient, as a sync worker would.
"""

import json
import sys
import time

import redis

from wedof.client import WedofClient
from wedof.throttle import RedisThrottle


def main(argv: list[str]) -> None:
    redis_url, key, rate, burst, seconds = argv[:5]
    throttle = RedisThrottle(redis.Redis.from_url(redis_url), key, float(rate), int(burst))
    client = WedofClient(argv[5], argv[6], throttle=throttle, max_attempts=1) if len(argv) > 5 else None
    grants = []
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline:  # bounded loop: stops by itself
        if client is not None:
            client.users_me()
        elif not throttle.acquire(timeout=max(0.0, deadline - time.monotonic())):
            break
        grants.append(throttle.last_granted_at)
    print(json.dumps(grants))


if __name__ == "__main__":
    main(sys.argv[1:])
