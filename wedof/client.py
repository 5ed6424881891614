"""HTTP client for the real Wedof API (``https://www.wedof.fr/api``, header ``X-Api-Key``).

One ``requests.Session`` per client, a timeout on every call, typed errors (:mod:`wedof.errors`),
retries with exponential backoff and jitter (tenacity) for transient failures only, an optional
shared throttle (:mod:`wedof.throttle`), and list endpoints streamed page by page so a sync of
any size holds one page in memory at a time.

Retry policy: network errors, 5xx and 429 are retried for idempotent methods (GET/PUT/DELETE).
A POST (transitions, billing, webhook creation) is retried only when Wedof cannot have processed
it (connection never established, 429): after a 5xx or a read timeout the caller must re-read
the folder before trying again, or it might bill twice. 4xx are never retried. A Retry-After
longer than ``retry_after_cap`` is not waited out here: the error (with ``retry_after``) goes
back to the caller, e.g. a Celery task that reschedules itself.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
)

from bdc.types import utcnow
from wedof.backoff import backoff_delay
from wedof.errors import (
    WedofError,
    WedofNetworkError,
    WedofProtocolError,
    WedofRateLimitedError,
    body_excerpt,
    error_from_response,
)
from wedof.ids import folder_number
from wedof.outbound import OutboundPolicy, check_base_url, fence_session, wedof_policy
from wedof.throttle import NullThrottle

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://www.wedof.fr/api"
WEDOF_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
REASON_TYPES = ("terminated", "refused", "canceled")
PAYMENT_TYPES = ("deposit", "bill")

# Other ids in our URL paths (certification folders look like "1234-1234567890", webhook ids are
# integers): an allowlist keeps hostile ids ("../users/me", "a/b", "x?y") out. Folder numbers: wedof.ids.
_PATH_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@~-]{0,127}$")
_DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_COUNT_RE = re.compile(r"[0-9]{1,12}")
_RESERVED_LIST_PARAMS = frozenset({"page", "limit"})
# The fixed words of the paths this client calls; any other segment is an id (see endpoint_class).
_PATH_WORDS = frozenset({
    "registrationFolders", "registrationFoldersReasons", "certificationFolders", "activities", "RegistrationFolder",
    "payments", "users", "organisms", "me", "webhooks", "files",
    "validate", "inTraining", "terminate", "serviceDone", "refuse", "cancel", "billing",
})
_MAX_CLASS_SEGMENTS = 4

# Called after every HTTP attempt: (method, path, status or None when no answer came, seconds).
RequestObserver = Callable[[str, str, "int | None", float], None]


def endpoint_class(path: str) -> str:
    """The path with its ids replaced: ``/registrationFolders/123/billing`` -> ``registrationFolders/{id}/billing``.

    Bounded whatever the ids are (metrics label it): only the client's own words are kept.
    """
    segments = [segment for segment in path.split("?", 1)[0].split("/") if segment]
    parts = [segment if segment in _PATH_WORDS else "{id}" for segment in segments[:_MAX_CLASS_SEGMENTS]]
    if len(segments) > _MAX_CLASS_SEGMENTS:
        parts.append("...")
    return "/".join(parts) or "/"


def path_id(value: object, what: str = "id") -> str:
    """``value`` made safe for one URL path segment, or ValueError for anything hostile."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"{what} must be a string or an integer, got {type(value).__name__}")
    text = str(value)
    if not _PATH_ID_RE.match(text) or ".." in text:
        raise ValueError(f"invalid {what}: {text[:40]!r}")
    return quote(text, safe="")


def folder_path_id(value: object) -> str:
    """A registration folder number as a URL path segment, or ValueError (:mod:`wedof.ids`; untrimmed)."""
    number = folder_number(value)
    if number is None or number != str(value):
        raise ValueError(f"invalid folder number: {str(value)[:40]!r}")
    return number


def format_wedof_datetime(value: datetime) -> str:
    """``YYYY-MM-DDTHH:mm:ssZ`` in UTC, the format of Wedof's ``since``/``until`` filters."""
    if not isinstance(value, datetime):
        raise ValueError("expected a datetime")
    if value.tzinfo is None or value.utcoffset() is None:
        # A naive datetime is ambiguous (local? UTC?); guessing would shift the sync window.
        raise ValueError("since/until must be timezone-aware datetimes")
    return value.astimezone(UTC).strftime(WEDOF_DATETIME_FORMAT)


def _format_day(value: date | str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and _DAY_RE.match(value):
        return value
    raise ValueError(f"expected a date or 'YYYY-MM-DD', got {value!r}")


def _csv(value: str | Iterable[str] | None) -> str | None:
    """Multi-value filters are comma-joined (``state=validated,accepted``)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    items = [str(v) for v in value]
    if not items:
        return None
    return ",".join(items)


def _query_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return format_wedof_datetime(value)
    if isinstance(value, list | tuple | set | frozenset):
        return _csv(value)
    return value


def _parse_total_count(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        total = int(value.strip())
    except ValueError:
        logger.warning("ignoring unreadable X-Total-Count header %r", value[:40])
        return None
    return total if total >= 0 else None


def _page_fingerprint(items: list[dict[str, Any]]) -> tuple:
    # Both keys: a payment's externalId is its folder's number, shared by all of that folder's payments.
    return tuple((item.get("externalId"), item.get("id")) for item in items)


class WedofClient:
    """A connection to one Wedof organism (one API key)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: tuple[float, float] = (3.05, 20),
        max_attempts: int = 5,
        max_retry_seconds: float = 60,
        retry_after_cap: float = 30,
        throttle: Any = None,
        user_agent: str = "bdc-wedof-sync",
        backoff_initial: float = 0.5,
        backoff_max: float = 10.0,
        observer: RequestObserver | None = None,
        outbound: OutboundPolicy | None = None,
    ) -> None:
        # Where the key may travel (wedof.outbound): the URL now, each socket's address at connect time.
        policy = outbound if outbound is not None else wedof_policy()
        base_url = check_base_url(base_url, policy)
        if not isinstance(api_key, str) or not api_key.strip() or any(c in api_key for c in "\r\n"):
            raise ValueError("a Wedof API key is required")
        if not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.max_retry_seconds = max_retry_seconds
        self.retry_after_cap = retry_after_cap
        self.throttle = throttle if throttle is not None else NullThrottle()
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.observer = observer  # e.g. the workers' metrics; never allowed to fail a call
        self.session = fence_session(requests.Session(), policy)
        self.session.headers.update(
            {
                "X-Api-Key": api_key,
                "Accept": "application/json",
                "Content-Type": "application/json",
                "User-Agent": user_agent,
            }
        )

    def __repr__(self) -> str:  # never shows the key
        return f"WedofClient(base_url={self.base_url!r})"

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> WedofClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- transport -------------------------------------------------------------------------------

    def _should_retry(self, method: str, error: BaseException) -> bool:
        if not isinstance(error, WedofError) or not error.transient:
            return False
        if isinstance(error, WedofRateLimitedError):
            # A longer wait than the cap goes back to the caller instead of blocking a worker.
            return error.retry_after is None or error.retry_after <= self.retry_after_cap
        if method in IDEMPOTENT_METHODS:
            return True
        # Non-idempotent: only when the request surely never reached Wedof.
        return isinstance(error, WedofNetworkError) and error.not_sent

    def _wait(self, retry_state: Any) -> float:
        error = retry_state.outcome.exception()
        retry_after = error.retry_after if isinstance(error, WedofRateLimitedError) else None
        return backoff_delay(retry_state.attempt_number, base=self.backoff_initial, cap=self.backoff_max,
                             retry_after=retry_after)

    def _log_retry(self, retry_state: Any) -> None:
        error = retry_state.outcome.exception()
        logger.warning(
            "Wedof call failed (%s), retry %d/%d in %.2fs",
            error,
            retry_state.attempt_number,
            self.max_attempts - 1,
            retry_state.next_action.sleep if retry_state.next_action else 0.0,
        )

    def _send_once(
        self, method: str, path: str, params: dict[str, Any] | None, body: Any
    ) -> requests.Response:
        if not self.throttle.acquire(timeout=self.max_retry_seconds):
            raise WedofRateLimitedError(
                "local throttle did not grant a call in time", method=method, path=path
            )
        url = self.base_url + path
        started = time.perf_counter()
        try:
            response = self.session.request(
                method, url, params=params, json=body, timeout=self.timeout, allow_redirects=False
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            self._observe(method, path, None, started)
            # ConnectTimeout / refused connection: nothing was sent, safe to retry any method.
            not_sent = isinstance(exc, requests.ConnectTimeout) or _is_connect_failure(exc)
            raise WedofNetworkError(
                f"network error: {type(exc).__name__}", not_sent=not_sent, method=method, path=path
            ) from None
        except requests.RequestException as exc:
            self._observe(method, path, None, started)
            raise WedofNetworkError(
                f"broken response: {type(exc).__name__}", method=method, path=path
            ) from None
        self._observe(method, path, response.status_code, started)
        logger.debug("%s %s -> %s", method, path, response.status_code)
        if 200 <= response.status_code < 300:
            return response
        if 300 <= response.status_code < 400:
            # Redirects are not followed: X-Api-Key would travel to wherever Location points.
            raise WedofProtocolError(
                f"unexpected redirect HTTP {response.status_code}",
                status=response.status_code,
                method=method,
                path=path,
            )
        raise error_from_response(
            response.status_code,
            _safe_text(response),
            response.headers,
            method=method,
            path=path,
            secrets=(self._api_key,),
        )

    def _observe(self, method: str, path: str, status: int | None, started: float) -> None:
        if self.observer is None:
            return
        try:
            self.observer(method, path, status, time.perf_counter() - started)
        except Exception:  # noqa: BLE001 - an observer's fault must never fail a Wedof call
            logger.debug("request observer failed", exc_info=True)

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
    ) -> requests.Response:
        retrying = Retrying(
            retry=retry_if_exception(lambda exc: self._should_retry(method, exc)),
            stop=stop_after_attempt(self.max_attempts) | stop_before_delay(self.max_retry_seconds),
            wait=self._wait,
            before_sleep=self._log_retry,
            reraise=True,
        )
        return retrying(self._send_once, method, path, params, body)

    def _json(self, response: requests.Response, expected: type, method: str, path: str) -> Any:
        try:
            data = response.json()
        except (ValueError, RecursionError):
            raise WedofProtocolError(
                "response is not valid JSON",
                status=response.status_code,
                body_excerpt=body_excerpt(_safe_text(response), (self._api_key,)),
                method=method,
                path=path,
            ) from None
        if not isinstance(data, expected):
            raise WedofProtocolError(
                f"expected a JSON {expected.__name__}, got {type(data).__name__}",
                status=response.status_code,
                body_excerpt=body_excerpt(_safe_text(response), (self._api_key,)),
                method=method,
                path=path,
            )
        return data

    def _get(self, path: str, expected: type = dict, params: dict[str, Any] | None = None) -> Any:
        return self._json(self._request("GET", path, params=params), expected, "GET", path)

    def _post(self, path: str, body: dict[str, Any] | None = None, expected: type = dict) -> Any:
        return self._json(self._request("POST", path, body=body or {}), expected, "POST", path)

    # -- paging ----------------------------------------------------------------------------------

    def iter_list_pages(
        self, path: str, params: dict[str, Any] | None = None, *, limit: int = 100
    ) -> Iterator[tuple[int, list[dict[str, Any]], int | None]]:
        """Yield ``(page_number, items, total_or_None)`` for any Wedof list endpoint.

        Stops when ``X-Total-Count`` items were seen, on an empty page, or (without the header)
        on a page shorter than the page size. Only one page is held at a time.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError("limit must be a positive integer")
        base_params = {k: v for k, v in (params or {}).items() if v is not None}
        # Arguments are checked above, now; the pages are fetched lazily below.
        return self._pages(path, base_params, limit)

    def _pages(
        self, path: str, base_params: dict[str, Any], limit: int
    ) -> Iterator[tuple[int, list[dict[str, Any]], int | None]]:
        page = 1
        seen = 0
        previous_fingerprint: tuple | None = None
        while True:
            query = {**base_params, "page": page, "limit": limit}
            response = self._request("GET", path, params=query)
            items = self._json(response, list, "GET", path)
            if not all(isinstance(item, dict) for item in items):
                raise WedofProtocolError(
                    "list item is not a JSON object", status=response.status_code, method="GET", path=path
                )
            total = _parse_total_count(response.headers.get("X-Total-Count"))
            if not items:
                return
            fingerprint = _page_fingerprint(items)
            if fingerprint == previous_fingerprint:
                # A server ignoring ``page`` would otherwise make us loop forever.
                raise WedofProtocolError(
                    f"page {page} repeats page {page - 1}",
                    status=response.status_code,
                    method="GET",
                    path=path,
                )
            previous_fingerprint = fingerprint
            seen += len(items)
            yield page, items, total
            # The server may serve fewer items than asked (a capped limit): it says so here.
            page_size = _parse_total_count(response.headers.get("X-Item-Per-Page")) or limit
            if total is not None:
                if seen >= total:
                    return
            elif len(items) < min(page_size, limit):
                return
            page += 1

    def _folder_params(
        self,
        *,
        state: str | Iterable[str] | None,
        type: str | Iterable[str] | None,
        billing_state: str | Iterable[str] | None,
        sort: str | None,
        order: str | None,
        since: datetime | None,
        until: datetime | None,
        filter_on_state_date: str | None,
        extra: dict[str, Any],
    ) -> dict[str, Any]:
        reserved = _RESERVED_LIST_PARAMS.intersection(extra)
        if reserved:
            raise ValueError(f"use the limit argument, not {sorted(reserved)}")
        if order is not None and order not in ("asc", "desc"):
            raise ValueError("order must be 'asc' or 'desc'")
        params: dict[str, Any] = {k: _query_value(v) for k, v in extra.items()}
        params.update(
            {
                "state": _csv(state),
                "type": _csv(type),
                "billingState": _csv(billing_state),
                "sort": sort,
                "order": order,
            }
        )
        if since is not None or until is not None:
            since_text = format_wedof_datetime(since) if since is not None else None
            until_text = format_wedof_datetime(until if until is not None else utcnow())
            if since is not None and until is not None and since > until:
                raise ValueError("since must not be after until")
            params.update(
                {
                    "period": "custom",
                    "since": since_text,
                    "until": until_text,
                    "filterOnStateDate": filter_on_state_date,
                }
            )
        return {k: v for k, v in params.items() if v is not None}

    # -- registration folders --------------------------------------------------------------------

    def iter_pages(
        self,
        *,
        state: str | Iterable[str] | None = None,
        type: str | Iterable[str] | None = None,
        billing_state: str | Iterable[str] | None = None,
        sort: str | None = None,
        order: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        filter_on_state_date: str = "lastUpdate",
        limit: int = 100,
        **extra: Any,
    ) -> Iterator[tuple[int, list[dict[str, Any]], int | None]]:
        """Registration folders, one page at a time: ``(page_number, folders, total_or_None)``."""
        params = self._folder_params(
            state=state,
            type=type,
            billing_state=billing_state,
            sort=sort,
            order=order,
            since=since,
            until=until,
            filter_on_state_date=filter_on_state_date,
            extra=extra,
        )
        return self.iter_list_pages("/registrationFolders", params, limit=limit)

    def count_registration_folders(
        self,
        *,
        state: str | Iterable[str] | None = None,
        type: str | Iterable[str] | None = None,
        billing_state: str | Iterable[str] | None = None,
        **extra: Any,
    ) -> int | None:
        """How many folders match the filters, read from Wedof's ``X-Total-Count`` of a ``limit=1`` listing.

        None when Wedof sends no such header (medium confidence that it does); a value that is not a
        plain count is a :class:`WedofProtocolError`: never a guessed number.
        """
        params = self._folder_params(state=state, type=type, billing_state=billing_state, sort=None, order=None,
                                     since=None, until=None, filter_on_state_date=None, extra=extra)
        path = "/registrationFolders"
        response = self._request("GET", path, params={**params, "page": 1, "limit": 1})
        raw = response.headers.get("X-Total-Count")
        if raw is None:
            return None
        text = raw.strip()
        if not _COUNT_RE.fullmatch(text):  # ASCII digits only: no sign, no "1e3", no thousand-digit number
            raise WedofProtocolError(f"X-Total-Count {raw[:40]!r} is not a count", status=response.status_code,
                                     method="GET", path=path)
        return int(text)

    def iter_registration_folders(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every registration folder matching the filters of :meth:`iter_pages`, streamed."""
        for _page, folders, _total in self.iter_pages(**filters):
            yield from folders

    def get_registration_folder(self, external_id: str) -> dict[str, Any]:
        return self._get(f"/registrationFolders/{folder_path_id(external_id)}")

    def update_registration_folder(
        self,
        external_id: str,
        *,
        completion_rate: int | None = None,
        notes: str | None = None,
        description: str | None = None,
        tags: Iterable[str] | None = None,
    ) -> dict[str, Any]:
        """PUT only the given fields (``0`` and ``""`` are values, not "no change")."""
        body: dict[str, Any] = {}
        if completion_rate is not None:
            if isinstance(completion_rate, bool) or not isinstance(completion_rate, int):
                raise ValueError("completion_rate must be an integer 0-100")
            if not 0 <= completion_rate <= 100:
                raise ValueError("completion_rate must be between 0 and 100")
            body["completionRate"] = completion_rate
        if notes is not None:
            body["notes"] = str(notes)
        if description is not None:
            body["description"] = str(description)
        if tags is not None:
            if isinstance(tags, str):
                raise ValueError("tags must be a list of strings (it replaces all tags)")
            body["tags"] = [str(tag) for tag in tags]
        if not body:
            raise ValueError("nothing to update")
        path = f"/registrationFolders/{folder_path_id(external_id)}"
        return self._json(self._request("PUT", path, body=body), dict, "PUT", path)

    def _transition(self, external_id: str, verb: str, body: dict[str, Any]) -> dict[str, Any]:
        path = f"/registrationFolders/{folder_path_id(external_id)}/{verb}"
        return self._post(path, {k: v for k, v in body.items() if v is not None})

    def validate(self, external_id: str, **body: Any) -> dict[str, Any]:
        """``notProcessed → validated``; body e.g. ``indicativeDuration``, ``weeklyDuration``."""
        return self._transition(external_id, "validate", body)

    def in_training(self, external_id: str, date: date | str | None = None) -> dict[str, Any]:
        return self._transition(external_id, "inTraining", {"date": _format_day(date)})

    def terminate(
        self,
        external_id: str,
        date: date | str | None = None,
        code: str | int | None = None,
        absence_duration: float | None = None,
    ) -> dict[str, Any]:
        return self._transition(
            external_id,
            "terminate",
            {"date": _format_day(date), "code": code, "absenceDuration": absence_duration},
        )

    def service_done(
        self,
        external_id: str,
        date: date | str | None = None,
        code: str | int | None = None,
        absence_duration: float | None = None,
        force_majeure_absence: bool | None = None,
        training_duration: float | None = None,
    ) -> dict[str, Any]:
        return self._transition(
            external_id,
            "serviceDone",
            {
                "date": _format_day(date),
                "code": code,
                "absenceDuration": absence_duration,
                "forceMajeureAbsence": force_majeure_absence,
                "trainingDuration": training_duration,
            },
        )

    def refuse(self, external_id: str, code: str | int, description: str | None = None) -> dict[str, Any]:
        return self._transition(external_id, "refuse", {"code": code, "description": description})

    def cancel(self, external_id: str, code: str | int, description: str | None = None) -> dict[str, Any]:
        return self._transition(external_id, "cancel", {"code": code, "description": description})

    def billing(self, external_id: str, bill_number: str, vat_rate: float | None = None) -> dict[str, Any]:
        if not isinstance(bill_number, str) or not bill_number.strip():
            raise ValueError("bill_number is required")
        return self._transition(external_id, "billing", {"billNumber": bill_number, "vatRate": vat_rate})

    def registration_folder_reasons(self, type: str) -> list[dict[str, Any]]:
        """Reason codes for ``terminated`` / ``refused`` / ``canceled`` transitions."""
        if type not in REASON_TYPES:
            raise ValueError(f"type must be one of {REASON_TYPES}")
        return self._get("/registrationFoldersReasons", list, params={"type": type})

    def create_folder_activity(self, external_id: str, *, title: str, type: str = "training",
                               description: str | None = None, event_time: datetime | None = None) -> dict[str, Any]:
        """``POST /activities/RegistrationFolder/{externalId}``: a trace in Wedof of what the organism did."""
        body = {"title": title, "type": type, "description": description, "origin": "manual",
                "eventTime": format_wedof_datetime(event_time) if event_time is not None else None}
        return self._post(f"/activities/RegistrationFolder/{folder_path_id(external_id)}",
                          {k: v for k, v in body.items() if v is not None})

    def list_folder_activities(self, external_id: str) -> list[dict[str, Any]]:
        return self._get(f"/activities/RegistrationFolder/{folder_path_id(external_id)}", list)

    def list_folder_files(self, external_id: str) -> list[dict[str, Any]]:
        return self._get(f"/registrationFolders/{folder_path_id(external_id)}/files", list)

    def list_payments(
        self, registration_folder_id: str, *, type: str | None = None, state: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The financer's payments of one folder, newest first, every page read (``GET /payments``)."""
        number = folder_path_id(registration_folder_id)
        if type is not None and type not in PAYMENT_TYPES:
            raise ValueError(f"type must be one of {PAYMENT_TYPES}")
        if state is not None and (not isinstance(state, str) or not _PATH_ID_RE.match(state)):
            raise ValueError("state must be a payment state such as 'issued'")
        params = {"registrationFolderId": number, "type": type, "state": state, "sort": "lastUpdate", "order": "desc"}
        return [payment for _page, items, _total in self.iter_list_pages("/payments", params, limit=limit)
                for payment in items]

    # -- certification folders -------------------------------------------------------------------

    def iter_certification_folders(
        self,
        *,
        state: str | Iterable[str] | None = None,
        sort: str | None = None,
        order: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        filter_on_state_date: str = "stateLastUpdate",
        limit: int = 100,
        **extra: Any,
    ) -> Iterator[dict[str, Any]]:
        params = self._folder_params(
            state=state,
            type=None,
            billing_state=None,
            sort=sort,
            order=order,
            since=since,
            until=until,
            filter_on_state_date=filter_on_state_date,
            extra=extra,
        )
        for _page, folders, _total in self.iter_list_pages("/certificationFolders", params, limit=limit):
            yield from folders

    def get_certification_folder(self, external_id: str) -> dict[str, Any]:
        return self._get(f"/certificationFolders/{path_id(external_id, 'externalId')}")

    # -- account and webhooks --------------------------------------------------------------------

    def users_me(self) -> dict[str, Any]:
        """The user owning the API key (also the cheapest way to check a key)."""
        return self._get("/users/me")

    def organisms_me(self) -> dict[str, Any]:
        return self._get("/organisms/me")

    def create_webhook(
        self,
        url: str,
        events: Iterable[str],
        secret: str | None,
        name: str = "bdc-wedof-sync",
        enabled: bool = True,
        ignore_ssl: bool = False,
    ) -> dict[str, Any]:
        """Register a webhook (Wedof answers 201); returns the webhook object with its ``id``."""
        parts = urlsplit(url or "")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("webhook url must be an absolute http(s) URL")
        event_list = [events] if isinstance(events, str) else list(events)
        if not event_list or not all(isinstance(e, str) and e for e in event_list):
            raise ValueError("events must be a non-empty list of event names")
        body = {
            "url": url,
            "events": event_list,
            "name": name,
            "secret": secret,
            "enabled": bool(enabled),
            "ignoreSsl": bool(ignore_ssl),
        }
        webhook = self._post("/webhooks", body)
        if "id" not in webhook:
            raise WedofProtocolError("created webhook has no id", method="POST", path="/webhooks")
        return webhook

    def delete_webhook(self, webhook_id: int | str) -> None:
        self._request("DELETE", f"/webhooks/{path_id(webhook_id, 'webhook id')}")


def _is_connect_failure(exc: requests.RequestException) -> bool:
    """True when the TCP connection was never made (refused, DNS), so nothing was sent."""
    text = repr(exc)
    return "NewConnectionError" in text or "Connection refused" in text or "NameResolutionError" in text


def _safe_text(response: requests.Response) -> str | None:
    try:
        return response.text
    except Exception:  # a body we cannot decode still deserves a typed error, not a crash
        return None
