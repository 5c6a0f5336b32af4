"""GitHub's REST rate limits: every answer carries `X-RateLimit-Limit/-Remaining/-Used/-Reset/-Resource`;
each authenticated request uses one (a 304 to a conditional request, and `GET /rate_limit`, use none). When
none remain, the primary limit answers 403 (or 429) with `API rate limit exceeded ...` until the reset. The
secondary limit answers 429 (or 403) with `Retry-After` and `You have exceeded a secondary rate limit ...`.

Tests bring either on: `exhaust(reset_in=...)` uses up every identity's budget until then; `secondary(...)`
makes the next requests meet the secondary limit."""
from __future__ import annotations

import math
import threading
import time
import uuid
from dataclasses import dataclass

from ..common.errors import HttpError

DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"


class RateLimitError(HttpError):
    """A rate-limit answer; `documentation_url` is the rate-limit page, not the endpoint's."""


@dataclass
class Bucket:
    limit: int
    used: int
    reset: float


@dataclass
class Secondary:
    retry_after: int
    times: int
    status: int


class RateLimits:
    def __init__(self, limit: int = 5000, window: float = 3600.0) -> None:
        self.limit = limit
        self.window = window
        self._buckets: dict[str, Bucket] = {}
        self._lock = threading.Lock()
        self._exhausted_until = 0.0
        self._primary_status = 403
        self._secondary: Secondary | None = None

    def _bucket(self, key: str, now: float) -> Bucket:
        bucket = self._buckets.get(key)
        if bucket is None or now >= bucket.reset:
            bucket = self._buckets[key] = Bucket(self.limit, 0, now + self.window)
        if now < self._exhausted_until:
            bucket.used, bucket.reset = bucket.limit, self._exhausted_until
        return bucket

    # -- steering (tests) --------------------------------------------------------------------------

    def exhaust(self, *, reset_in: float = 1.0, status: int = 403) -> None:
        """Use up every identity's budget until `reset_in` seconds from now (primary limit; 403 or 429)."""
        if status not in (403, 429):
            raise ValueError("GitHub answers the primary rate limit with 403 or 429")
        with self._lock:
            self._exhausted_until = time.time() + reset_in
            self._primary_status = status

    def secondary(self, *, retry_after: int = 1, times: int = 1, status: int = 429) -> None:
        """The next `times` requests meet the secondary rate limit (429 or 403 with Retry-After)."""
        if status not in (403, 429):
            raise ValueError("GitHub answers the secondary rate limit with 403 or 429")
        with self._lock:
            self._secondary = Secondary(retry_after, times, status)

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()
            self._exhausted_until = 0.0
            self._secondary = None

    # -- per request -------------------------------------------------------------------------------

    def check(self, key: str, who: str) -> None:
        """Raise the secondary or primary rate-limit error when this request meets one."""
        now = time.time()
        with self._lock:
            if self._secondary is not None and self._secondary.times > 0:
                self._secondary.times -= 1
                retry_after, status = self._secondary.retry_after, self._secondary.status
                raise secondary_error(status, retry_after)
            bucket = self._bucket(key, now)
            if bucket.used >= bucket.limit:
                raise RateLimitError(self._primary_status, "RateLimited",
                                     f"API rate limit exceeded for {who}. If you reach out to GitHub Support for "
                                     f"help, please include the request ID {request_id()} and timestamp "
                                     f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(now))}.")

    def consume(self, key: str) -> None:
        with self._lock:
            bucket = self._bucket(key, time.time())
            bucket.used = min(bucket.limit, bucket.used + 1)

    def headers(self, key: str) -> dict[str, str]:
        with self._lock:
            bucket = self._bucket(key, time.time())
            return {"X-RateLimit-Limit": str(bucket.limit), "X-RateLimit-Remaining": str(bucket.limit - bucket.used),
                    "X-RateLimit-Reset": str(math.ceil(bucket.reset)), "X-RateLimit-Used": str(bucket.used),
                    "X-RateLimit-Resource": "core"}

    def overview(self, key: str) -> dict:
        """`GET /rate_limit`'s body."""
        h = self.headers(key)
        core = {"limit": int(h["X-RateLimit-Limit"]), "used": int(h["X-RateLimit-Used"]),
                "remaining": int(h["X-RateLimit-Remaining"]), "reset": int(h["X-RateLimit-Reset"])}
        search = {"limit": 30, "used": 0, "remaining": 30, "reset": int(time.time()) + 60}
        graphql = {"limit": 5000, "used": 0, "remaining": 5000, "reset": int(time.time()) + 3600}
        return {"resources": {"core": core, "search": search, "graphql": graphql}, "rate": core}


def request_id() -> str:
    """An `X-GitHub-Request-Id` value."""
    raw = uuid.uuid4().hex.upper()
    return f"{raw[:4]}:{raw[4:9]}:{raw[9:15]}:{raw[15:21]}:{raw[21:29]}"


def secondary_error(status: int, retry_after: int) -> RateLimitError:
    return RateLimitError(status, "SecondaryRateLimit",
                          "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
                          f"If you reach out to GitHub Support for help, please include the request ID "
                          f"{request_id()}.", headers={"Retry-After": str(retry_after)})
