"""A polite ClinicalTrials.gov API v2 client on httpx.

Pages by `nextPageToken`, retries 429/5xx/timeouts with exponential backoff (honouring
Retry-After), and spaces requests by a minimum interval (the public API asks for about 50
requests a minute). `base_url` points anywhere, which is how the tests run it against a server
on 127.0.0.1.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from synthtrials.tools.errors import ConfigError

DEFAULT_BASE_URL = "https://clinicaltrials.gov/api/v2"
RETRY_STATUS = {429, 500, 502, 503, 504}


class RateLimiter:
    """At most one request per `interval` seconds (thread-safe)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(now, self._next) + self.interval
        if delay > 0:
            time.sleep(delay)


def retry_after_seconds(value: str | None) -> float | None:
    """Parse a Retry-After header (seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class CtGovClient:
    def __init__(self, base_url: str = DEFAULT_BASE_URL, *, timeout: float = 30.0, max_retries: int = 5,
                 backoff: float = 1.0, max_backoff: float = 60.0, min_interval: float = 1.2,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.limiter = RateLimiter(min_interval)
        self.requests_made = 0
        self.retries = 0
        self._http = httpx.Client(timeout=timeout, transport=transport,
                                  headers={"User-Agent": "synthtrials (+https://pypi.org/project/synthtrials)"})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CtGovClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        url = f"{self.base_url}/{path.lstrip('/')}"
        attempt = 0
        while True:
            self.limiter.wait()
            self.requests_made += 1
            problem: str
            wait: float | None = None
            try:
                response = self._http.get(url, params=params)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                problem = f"{type(exc).__name__}"
            else:
                if response.status_code == 200:
                    try:
                        return response.json()
                    except ValueError:
                        problem = "answer is not JSON"
                elif response.status_code in RETRY_STATUS:
                    problem = f"HTTP {response.status_code}"
                    wait = retry_after_seconds(response.headers.get("Retry-After"))
                elif response.status_code == 404:
                    raise ConfigError(f"{url}: not found (HTTP 404)")
                else:
                    raise ConfigError(f"{url}: HTTP {response.status_code} {response.text[:120]!r}")
            attempt += 1
            if attempt > self.max_retries:
                raise ConfigError(f"{url}: gave up after {self.max_retries} retries ({problem})")
            self.retries += 1
            if wait is None:
                wait = min(self.max_backoff, self.backoff * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
            time.sleep(min(wait, self.max_backoff))

    def study(self, nct_id: str) -> dict[str, Any]:
        """One study as API v2 JSON."""
        return self._get(f"studies/{nct_id}")

    def search(self, query: str, *, page_size: int = 100, max_studies: int | None = None,
               extra: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Studies matching `query.term`, following `nextPageToken` until done or `max_studies`."""
        params: dict[str, Any] = {"query.term": query, "pageSize": page_size, "format": "json", **(extra or {})}
        yielded = 0
        while True:
            page = self._get("studies", params)
            for study in page.get("studies", []):
                yield study
                yielded += 1
                if max_studies is not None and yielded >= max_studies:
                    return
            token = page.get("nextPageToken")
            if not token:
                return
            params["pageToken"] = token
