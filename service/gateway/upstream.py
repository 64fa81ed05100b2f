"""What OpenRouter and Vertex AI share: an OpenAI-compatible chat endpoint over httpx.

One request is retried in place on 429, 408, 5xx, timeouts and connection errors, at most
``max_retries`` times: after ``Retry-After`` when the provider sends one (a longer wait
than ``max_retry_after_seconds`` is not taken: the error goes to the chain at once), else
after an exponential backoff with jitter. Streams are retried only before their first
byte; once a provider answered 200, tokens are being spent and nothing is sent twice.
The same holds for a non-stream answer: a 2xx whose body stalls, breaks off or is no
answer raises an error marked ``billed``, for the gateway to meter before the chain moves
on. So does an attempt whose request went out whole and that got no answer (a timeout,
a lost connection): the provider may have run it. Each such attempt retried in place is
metered before the retry (``METER_ATTEMPT``), as its own event. An answer is kept to
``max_answer_bytes`` (a body, or one stream event).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import httpx
import msgspec
import structlog

from service.errors import (
    AnswerDeadlineError,
    AuthenticationFailedError,
    BilledAttempt,
    GatewayError,
    InsufficientCreditsError,
    RateLimitedError,
    UnknownModelError,
    UpstreamRejectedError,
    UpstreamUnavailableError,
)
from service.gateway.models import (
    ChatRequest,
    Completion,
    ProviderUsage,
    StreamEvent,
    decode_json,
    generated_text,
)
from service.gateway.sse import DONE, EventTooLarge, SSEMessage, SSEParser

log = structlog.get_logger("luc.gateway")

_MODEL_NOT_FOUND = (
    "not a valid model",
    "model not found",
    "model_not_found",
    "unknown model",
    "does not exist",
    "no endpoints found",
    "is not found",
)


REDACTED = "[LUC's key, redacted]"
"""What stands for LUC's own credential in anything a provider sent that LUC relays."""
MIN_SECRET_CHARS = 8
"""A credential shorter than this is not looked for: it would blank ordinary words."""

MAX_ANSWER_BYTES = 64 * 1024 * 1024
"""The default of ``LUC_GATEWAY_MAX_ANSWER_BYTES``: far above a chat answer (a 128k-token
answer is about 0.5 MB), room for images inline in base64."""


class _TooLarge(Exception):
    """A body past ``max_answer_bytes``; ``head``: its first bytes, for an error's message."""

    def __init__(self, head: bytes) -> None:
        super().__init__("too large")
        self.head = head


async def read_bounded(response: httpx.Response, limit: int) -> bytes:
    """A response's body (decoded from any content encoding, so a small gzip bomb counts
    at its full size), or ``_TooLarge`` as soon as it passes ``limit`` bytes."""
    parts: list[bytes] = []
    size = 0
    async for part in response.aiter_bytes():
        size += len(part)
        if size > limit:
            raise _TooLarge(b"".join(parts)[:1000] if parts else part[:1000])
        parts.append(part)
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a provider is asked: retries before an answer, and how long an answer (the
    body of a 2xx that is not streamed) may take to arrive whole."""

    max_retries: int = 2
    backoff_base_seconds: float = 0.5
    max_retry_after_seconds: float = 60.0
    answer_deadline_seconds: float | None = None
    """``LUC_GATEWAY_STREAM_DEADLINE_SECONDS``: the timeout bounds each read only, so a
    body sent a byte a minute would hold the call (and its reservation) for ever."""
    max_answer_bytes: int = MAX_ANSWER_BYTES
    """``LUC_GATEWAY_MAX_ANSWER_BYTES``: the most a provider's answer (a body, or one event
    of a stream) may hold, decoded; past it the answer is cut (a 502, metered: it reached
    the provider). Nothing else bounds what a misbehaving provider makes a worker keep."""

    def delay(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait before retry ``attempt`` (0-based); ``None``: do not wait."""
        if retry_after is not None:
            return max(retry_after, 0.0) if retry_after <= self.max_retry_after_seconds else None
        # Full backoff halved by jitter, so retries of many callers spread out.
        return float(self.backoff_base_seconds * 2**attempt * random.uniform(0.5, 1.0))


def retry_after_seconds(headers: httpx.Headers, error: Mapping[str, Any]) -> float | None:
    """``Retry-After`` (seconds or an HTTP date), else what the error body says."""
    raw = headers.get("retry-after")
    if raw:
        try:
            seconds = float(raw)
        except ValueError:
            try:
                when = parsedate_to_datetime(raw)
            except (TypeError, ValueError):
                when = None
            if when is not None:
                return max((when - datetime.now(UTC)).total_seconds(), 0.0)
        else:
            # "inf", "nan", "1e400" are no duration (and no Retry-After can be made of
            # them for LUC's own caller): as if the header were absent.
            if math.isfinite(seconds):
                return max(seconds, 0.0)
    metadata = error.get("metadata")
    availability = error.get("availability")
    for holder, key in ((metadata, "retry_after_seconds"), (availability, "retry_after")):
        if isinstance(holder, Mapping):
            value = holder.get(key)
            # JSON decoded with Decimal floats; a duration in seconds, not money.
            if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
                with contextlib.suppress(OverflowError):  # an int past a float's range
                    seconds = float(value)
                    if math.isfinite(seconds):
                        return max(seconds, 0.0)
    return None


def error_object(body: bytes) -> tuple[str, Mapping[str, Any]]:
    """The message and ``error`` object of an error body, in OpenRouter's envelope or
    Google's (sometimes wrapped in a list); a body that is neither is quoted."""
    try:
        data = decode_json(body) if body.strip() else None
    except msgspec.DecodeError:
        data = None
    if isinstance(data, list) and data and isinstance(data[0], Mapping):
        data = data[0]
    error = data.get("error") if isinstance(data, Mapping) else None
    if isinstance(error, Mapping):
        message = str(error.get("message") or "no message")
        metadata = error.get("metadata")
        raw = metadata.get("raw") if isinstance(metadata, Mapping) else None
        if isinstance(raw, str) and raw:
            message = f"{message}: {raw[:300]}"
        return message, error
    if isinstance(error, str):
        return error, {}
    text = body.decode("utf-8", "replace").strip()[:300]
    return text or "empty body", {}


def is_unknown_model(message: str, error: Mapping[str, Any]) -> bool:
    metadata = error.get("metadata")
    if isinstance(metadata, Mapping) and metadata.get("error_type") == "model_not_found":
        return True
    lowered = message.lower()
    return "model" in lowered and any(m in lowered for m in _MODEL_NOT_FOUND)


@dataclass(slots=True)
class CallProgress:
    """How far a non-streaming call got, for the gateway to meter it if its task is
    cancelled (LUC shutting down): a cancellation raises no billed error."""

    answered: tuple[str, str | None] | None = None
    """(provider, generation id from ``X-Generation-Id``) of the attempt a provider has
    answered 2xx, or that was sent to it whole and awaits its answer (so is paid for, or
    may be), and that is neither answered whole nor metered yet."""
    on_answered: Callable[[str, str | None], None] | None = None
    """Called with (provider, None) when an attempt's request went out whole, then with
    (provider, generation id) when the provider answers 2xx: the gateway holds the call's
    usage there, for the next process should this one end before the answer is read."""
    on_refused: Callable[[], None] | None = None
    """Called when the provider answers an attempt sent whole with no 2xx: nothing was
    generated, so the hold goes."""
    held: tuple[int, str] | None = None
    """The hold the gateway made for the attempt sent whole or answered 2xx (the sink's
    token, the event id), until that attempt's usage supersedes it."""

    def sent_whole(self, provider: str) -> None:
        """The attempt's request went out whole: the provider may run (and bill) it from
        now on, answer or not."""
        self.answered = (provider, None)
        if self.on_answered is not None:
            self.on_answered(provider, None)

    def refused(self) -> None:
        self.answered = None
        if self.on_refused is not None:
            self.on_refused()

    def answered_2xx(self, provider: str, generation_id: str | None) -> None:
        self.answered = (provider, generation_id)
        if self.on_answered is not None:
            self.on_answered(provider, generation_id)


CALL_PROGRESS: ContextVar[CallProgress | None] = ContextVar("luc_call_progress", default=None)
"""Set by the gateway in each call's own task (a task copies the context it starts in)."""

METER_ATTEMPT: ContextVar[Callable[[GatewayError], Awaitable[None]] | None] = ContextVar(
    "luc_meter_attempt", default=None
)
"""Set by the chain around each provider's call: meters an attempt that reached the
provider (its error ``billed``) and that the provider's own retry leaves behind."""


class _Delivery:
    """Whether an attempt's request went out whole, from httpcore's ``trace`` events
    (``http11.send_request_body.complete``, or ``http2.``): the line between an attempt
    the provider never saw and one it may have run (and billed) without answering.
    The exception alone cannot draw it: httpcore swallows a write error to read an early
    answer, so a read error may follow a request sent in part."""

    __slots__ = ("name", "progress", "sent")

    def __init__(self, name: str, progress: CallProgress | None) -> None:
        self.name = name
        self.progress = progress
        self.sent = False

    async def trace(self, event: str, info: Mapping[str, Any]) -> None:
        if event.endswith(".send_request_body.complete"):
            self.sent = True
            if self.progress is not None:
                # Sent whole: if LUC shuts down (or dies) before the answer, this attempt
                # is paid for as one answered 2xx would be (no generation id known yet).
                self.progress.sent_whole(self.name)


class HttpProvider:
    """Base of the HTTP providers; subclasses give headers, usage mapping and advice."""

    name: ClassVar[str] = "http"

    def __init__(self, http: httpx.AsyncClient, base_url: str, retry: RetryPolicy) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.retry = retry
        # Parsed once: httpx parses a string URL on every request.
        self._chat_url = httpx.URL(f"{self.base_url}/chat/completions")

    # What subclasses say ------------------------------------------------------------------

    async def headers(self) -> dict[str, str]:
        raise NotImplementedError

    def usage_of(self, usage: Mapping[str, Any]) -> ProviderUsage | None:
        raise NotImplementedError

    def serves(self, model: str) -> bool:
        return True

    def payload(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        return {**request.body, "model": request.model, "stream": stream}

    async def recover(self, error: GatewayError) -> bool:
        """A chance to repair the cause (a stale token) and retry at once."""
        return False

    def secrets(self) -> tuple[str, ...]:
        """LUC's own credentials for this provider, as sent: never to leave the server."""
        return ()

    def redacted(self, text: str) -> str:
        """``text`` (a provider's error message, relayed to callers and logged) with LUC's
        credentials blanked: a provider echoing the key it was sent (``invalid key
        sk-or-v1-…``) handed it to every caller of the proxy (SPEC §10). Surrogates pass
        through: a provider's JSON may escape a lone one."""
        raw = text.encode("utf-8", "surrogatepass")
        return self.redacted_bytes(raw).decode("utf-8", "surrogatepass")

    def redacted_bytes(self, content: bytes) -> bytes:
        """An answer relayed as sent (a 2xx body, a stream's chunk) but for LUC's
        credentials: a provider's error inside a 2xx answer or a stream went to the caller
        as sent, key and all. A look for each credential per chunk; copied only when one is
        there."""
        for secret in self.secrets():
            if len(secret) >= MIN_SECRET_CHARS and (raw := secret.encode()) in content:
                content = content.replace(raw, REDACTED.encode())
        return content

    async def usage_after(
        self, generation_id: str, *, patient: bool = False
    ) -> ProviderUsage | None:
        """Usage of a generation whose answer carried none (after a mid-stream error)."""
        return None

    def classify(
        self, status: int, message: str, error: Mapping[str, Any], retry_after: float | None
    ) -> GatewayError:
        """An HTTP error status as a typed error."""
        args: dict[str, Any] = {"provider": self.name, "upstream_status": status}
        if status == 401:
            return AuthenticationFailedError(message, **args)
        if status == 402:
            return InsufficientCreditsError(message, **args)
        if status == 429:
            return RateLimitedError(message, retry_after=retry_after, **args)
        if status == 404 or (status == 400 and is_unknown_model(message, error)):
            return UnknownModelError(message, **args)
        if status == 408 or status >= 500:
            return UpstreamUnavailableError(message, retry_after=retry_after, **args)
        return UpstreamRejectedError(message, **args)

    # The calls --------------------------------------------------------------------------------

    async def complete(self, request: ChatRequest) -> Completion:
        response = await self._send(request, stream=False)
        content = response.content
        header_id = response.headers.get("x-generation-id")
        # From here on the provider answered 2xx and is paid: an answer LUC cannot use
        # still leaves the chain as a billed error, so its usage is metered.
        try:
            data = decode_json(content.strip())
        except msgspec.DecodeError as exc:
            raise billed(
                UpstreamUnavailableError(f"the answer is not JSON ({exc})", provider=self.name),
                BilledAttempt(header_id),
            ) from exc
        if not isinstance(data, dict):
            raise billed(
                UpstreamUnavailableError("the answer is not a JSON object", provider=self.name),
                BilledAttempt(header_id),
            )
        if "choices" not in data and isinstance(data.get("error"), Mapping):
            message, error = error_object(content)
            message = self.redacted(message)
            code = error.get("code")
            status = code if isinstance(code, int) and not isinstance(code, bool) else 502
            usage = data.get("usage")
            raise billed(
                self.classify(status, message, error, None),
                BilledAttempt(
                    _str(data.get("id")) or header_id,
                    _str(data.get("model")),
                    usage if isinstance(usage, Mapping) else None,
                ),
            )
        choice = first_choice(data)
        reply = choice.get("message")
        text = reply.get("content") if isinstance(reply, Mapping) else None
        choice_error = choice.get("error")
        usage = data.get("usage")
        return Completion(
            provider=self.name,
            body=self.redacted_bytes(content),
            generation_id=_str(data.get("id")) or response.headers.get("x-generation-id"),
            model=_str(data.get("model")),
            text=text if isinstance(text, str) else "",
            finish_reason=_str(choice.get("finish_reason")),
            usage=self.usage_of(usage) if isinstance(usage, Mapping) else None,
            error=self.redacted(error_text(choice_error)) if choice_error else None,
            generated=_generated(data),
        )

    async def open_stream(self, request: ChatRequest) -> HttpStream:
        return HttpStream(self, await self._send(request, stream=True))

    async def _send(self, request: ChatRequest, *, stream: bool) -> httpx.Response:
        """POST the chat request; a 2xx response (for streams: unread) or a typed error."""
        attempt = 0
        recovered = False
        while True:
            body = msgspec.json.encode(self.payload(request, stream))
            headers = {**await self.headers(), "Content-Type": "application/json"}
            if stream:
                headers["Accept"] = "text/event-stream"
            delivery = _Delivery(self.name, CALL_PROGRESS.get())
            outgoing = self.http.build_request(
                "POST",
                self._chat_url,
                content=body,
                headers=headers,
                extensions={"trace": delivery.trace},
            )
            error: GatewayError
            try:
                # Always sent as a stream, so that the status is known before the body:
                # a non-stream body is read below, where a failure is a billed one.
                response = await self.http.send(outgoing, stream=True)
            except httpx.HTTPError as exc:
                error = self._unanswered(exc, sent=delivery.sent)
            else:
                if delivery.progress is not None and response.status_code >= 300:
                    delivery.progress.refused()  # nothing was generated
                if response.status_code < 300:
                    if (progress := CALL_PROGRESS.get()) is not None:
                        progress.answered_2xx(self.name, response.headers.get("x-generation-id"))
                    if not stream:
                        await self._read_answer(response)
                    return response
                try:
                    content = await read_bounded(response, self.retry.max_answer_bytes)
                except _TooLarge as exc:
                    content = exc.head  # an error's message is in its first bytes
                await response.aclose()
                if response.status_code < 400:
                    # A redirect is no answer: nothing was generated, so nothing is metered
                    # (read as one, it billed the prompt of every call that met it), and
                    # LUC follows none (its key would go wherever the redirect points).
                    error = redirected(self.name, response)
                else:
                    message, err = error_object(content)
                    message = self.redacted(message)
                    error = self.classify(
                        response.status_code,
                        message,
                        err,
                        retry_after_seconds(response.headers, err),
                    )
            if not recovered and await self.recover(error):
                recovered = True
                continue
            delay = self.retry.delay(attempt, error.retry_after) if error.retryable else None
            if delay is None or attempt >= self.retry.max_retries:
                raise error
            if error.billed is not None and (meter := METER_ATTEMPT.get()) is not None:
                # This attempt reached the provider and is asked again: each is paid for,
                # so each is metered now, as its own event (the chain meters the last).
                await meter(error)
            attempt += 1
            log.info(
                "upstream_retry",
                provider=self.name,
                status=error.upstream_status,
                attempt=attempt,
                delay_seconds=round(delay, 3),
            )
            await asyncio.sleep(delay)

    def _unanswered(self, exc: httpx.HTTPError, *, sent: bool) -> GatewayError:
        """An attempt that got no answer. One whose request never went whole (no
        connection, a connect or pool timeout, a write that failed) cannot have been run by
        the provider. One sent whole may well have been, and billed, answer or not: its
        error is ``billed`` (no generation id, no usage), to be metered on its prompt."""
        kind = type(exc).__name__
        timed_out = isinstance(exc, httpx.TimeoutException)
        if not sent:
            if timed_out:
                detail = f"no answer within the timeout ({kind}), the request not sent"
            else:
                # The address without what may be credentials in it (a proxy's user and
                # password, a query's key): this text reaches callers and the log.
                shown = httpx.URL(self.base_url).copy_with(username=None, password=None, query=None)
                detail = f"cannot reach {shown} ({kind}: {exc})"
            return UpstreamUnavailableError(detail, provider=self.name)
        if timed_out:
            detail = f"no answer within the timeout after the request was sent ({kind})"
        else:
            detail = f"the connection broke after the request was sent ({kind}: {exc})"
        outcome = "timeout" if timed_out else "connection_lost"
        return billed(
            UpstreamUnavailableError(detail, provider=self.name),
            BilledAttempt(outcome=outcome),
        )

    async def _read_answer(self, response: httpx.Response) -> None:
        """Read a 2xx body. Tokens are spent from the status on, so a body that stalls or
        breaks off is never retried in place: it is a billed error for the chain."""
        deadline = asyncio.timeout(self.retry.answer_deadline_seconds)
        limit = self.retry.max_answer_bytes
        try:
            async with deadline:
                # What ``aread`` would leave: the body kept on the response (``content``).
                response._content = await read_bounded(response, limit)
        except _TooLarge as exc:
            await response.aclose()
            error = UpstreamUnavailableError(
                f"the answer (HTTP {response.status_code}) was larger than LUC's limit of "
                f"{limit} bytes (LUC_GATEWAY_MAX_ANSWER_BYTES) and was cut",
                provider=self.name,
                advice="ask for a shorter answer (max_tokens, fewer choices) or raise "
                "LUC_GATEWAY_MAX_ANSWER_BYTES; the tokens spent are billed",
            )
            # Not asked again, here or of the next provider: the same request makes the
            # same answer, paid for again each time.
            error.retryable = False
            error.falls_through = False
            raise billed(error, BilledAttempt(response.headers.get("x-generation-id"))) from exc
        except TimeoutError as exc:
            await response.aclose()
            if not deadline.expired():
                raise
            raise billed(
                AnswerDeadlineError(
                    f"the answer (HTTP {response.status_code}) was still arriving after "
                    f"LUC's deadline of {self.retry.answer_deadline_seconds:g} s and was cut",
                    provider=self.name,
                ),
                BilledAttempt(response.headers.get("x-generation-id")),
            ) from exc
        except httpx.HTTPError as exc:
            await response.aclose()
            how = (
                "stalled beyond the timeout"
                if isinstance(exc, httpx.TimeoutException)
                else "broke off"
            )
            raise billed(
                UpstreamUnavailableError(
                    f"the answer (HTTP {response.status_code}) {how} ({type(exc).__name__})",
                    provider=self.name,
                ),
                BilledAttempt(response.headers.get("x-generation-id")),
            ) from exc


def redirected(provider: str, response: httpx.Response) -> GatewayError:
    """A 3xx: the base URL LUC was given is not the provider's endpoint (``http://`` for
    ``https://``, a moved path). The same URL redirects again, so it is not retried; another
    provider of the chain may answer."""
    location = response.headers.get("location", "")[:300]
    error = UpstreamUnavailableError(
        f"answered a redirect to {location!r}, not an answer",
        provider=provider,
        upstream_status=response.status_code,
        advice="set the provider's base URL (LUC_OPENROUTER_BASE_URL, LUC_VERTEX_BASE_URL) to "
        "the URL it redirects to: LUC follows no redirects, which would carry its key elsewhere",
    )
    error.retryable = False
    return error


def billed(error: GatewayError, attempt: BilledAttempt) -> GatewayError:
    """``error``, marked as raised after a 2xx: the attempt is paid for."""
    error.billed = attempt
    return error


DRAIN_SECONDS = 5.0
"""How long what follows ``[DONE]`` may take to end the body before the connection is
closed instead of kept for the next call."""
_draining: set[asyncio.Task[None]] = set()


class HttpStream:
    """An open SSE answer; ``events()`` reads it once, to the end or the first failure."""

    def __init__(self, provider: HttpProvider, response: httpx.Response) -> None:
        self.provider = provider
        self.response = response
        self.generation_id = response.headers.get("x-generation-id")
        self._drained = False

    async def events(self) -> AsyncIterator[StreamEvent]:
        name = self.provider.name
        messages = self._messages()
        try:
            if _media_type(self.response) == "application/json":
                for event in await self._whole_answer():
                    yield event
                return
            async for message in messages:
                if message.comment:
                    yield StreamEvent(message.data, comment=True)
                    continue
                if message.data.strip() == DONE:
                    self._drain(messages)
                    return
                try:
                    data = decode_json(message.data)
                except msgspec.DecodeError:
                    text = message.data[:200].decode(errors="replace")
                    log.warning("stream_event_not_json", provider=name, data=text)
                    continue
                if isinstance(data, dict):
                    yield StreamEvent(message.data, data=data)
            # A stream that succeeds ends with [DONE] (one that fails, with an error event,
            # which ends the reading first): a body that just stops was cut short on the
            # way (a proxy, a connection closed without framing), and the caller must not
            # be handed a [DONE] for a partial answer.
            raise UpstreamUnavailableError(
                "the stream ended without [DONE] (cut short)", provider=name
            )
        except (EventTooLarge, _TooLarge) as exc:
            # Answered 200: paid for, even if no event came whole (metered all the same).
            raise billed(
                UpstreamUnavailableError(
                    f"the stream sent an event larger than LUC's limit of "
                    f"{self.provider.retry.max_answer_bytes} bytes "
                    "(LUC_GATEWAY_MAX_ANSWER_BYTES) and was cut",
                    provider=name,
                ),
                BilledAttempt(self.generation_id),
            ) from exc
        except httpx.TimeoutException as exc:
            raise UpstreamUnavailableError(
                f"the stream stalled beyond the timeout ({type(exc).__name__})", provider=name
            ) from exc
        except httpx.HTTPError as exc:
            raise UpstreamUnavailableError(
                f"the stream broke off ({type(exc).__name__}: {exc})", provider=name
            ) from exc
        finally:
            if not self._drained:
                await self.response.aclose()

    async def _whole_answer(self) -> list[StreamEvent]:
        """A provider (a relay) that ignored ``stream: true`` and answered with one JSON
        body, its whole answer and usage: a 2xx answer, paid for. Read as the one chunk a
        stream of it would have been (``answer_chunk``), so it is metered from its usage
        and the caller, who asked for a stream, gets one; the body's end is the stream's."""
        body = await read_bounded(self.response, self.provider.retry.max_answer_bytes)
        try:
            data = decode_json(body.strip())
        except msgspec.DecodeError as exc:
            raise UpstreamUnavailableError(
                f"the stream came as a JSON body that does not parse ({exc})",
                provider=self.provider.name,
            ) from exc
        if not isinstance(data, dict):
            raise UpstreamUnavailableError(
                "the stream came as a JSON body that is no object", provider=self.provider.name
            )
        chunk = answer_chunk(data)
        return [StreamEvent(_encode_number(chunk), data=chunk)]

    async def _messages(self) -> AsyncIterator[SSEMessage]:
        """The body's events as its bytes arrive (decoded from any content encoding)."""
        parser = SSEParser(self.provider.retry.max_answer_bytes)
        async for chunk in self.response.aiter_bytes():
            for message in parser.feed(chunk):
                yield message
        for message in parser.close():
            yield message

    def _drain(self, rest: AsyncIterator[Any]) -> None:
        """Read what follows ``[DONE]`` (the body's end) in the background, then close: a
        response read to its end gives its connection back to httpx's pool, one left
        unread closes it, and every stream paid for a new TCP (and TLS) connection."""
        self._drained = True

        async def drain() -> None:
            try:
                async with asyncio.timeout(DRAIN_SECONDS):
                    async for _ in rest:
                        pass  # nothing is expected after [DONE]: a provider's extras
            except Exception:  # a body that never ends or breaks: the connection goes
                pass
            finally:
                with contextlib.suppress(Exception):
                    await self.response.aclose()

        task = asyncio.create_task(drain(), name="luc-upstream-drain")
        _draining.add(task)
        task.add_done_callback(_draining.discard)

    async def aclose(self) -> None:
        if not self._drained:
            await self.response.aclose()


_encode_number = msgspec.json.Encoder(decimal_format="number").encode
"""JSON as providers write it: a Decimal (``usage.cost``) as a number with its digits."""


def _media_type(response: httpx.Response) -> str:
    media: str = response.headers.get("content-type", "")
    return media.partition(";")[0].strip().lower()


def answer_chunk(answer: dict[str, Any]) -> dict[str, Any]:
    """A whole chat completion as one ``chat.completion.chunk``: each choice's ``message``
    as its ``delta`` (tool calls numbered by ``index``, as stream deltas are), the usage
    on the same chunk (as OpenRouter's last chunk may carry it). A body without
    ``choices`` (an error object) is passed on as it is: its ``error`` ends the stream."""
    if "choices" not in answer:
        return answer
    choices: list[Any] = []
    raw = answer["choices"]
    for position, choice in enumerate(raw if isinstance(raw, list) else []):
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        delta = dict(message) if isinstance(message, dict) else {}
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            delta["tool_calls"] = [
                {"index": n, **call} if isinstance(call, dict) and "index" not in call else call
                for n, call in enumerate(calls)
            ]
        piece = {k: v for k, v in choice.items() if k != "message"}
        piece.setdefault("index", position)
        piece["delta"] = delta
        choices.append(piece)
    return {**answer, "object": "chat.completion.chunk", "choices": choices}


def _generated(answer: Mapping[str, Any]) -> str:
    """What every choice of an answer generated (with ``n``, each is paid for)."""
    choices = answer.get("choices")
    if not isinstance(choices, list):
        return ""
    return "".join(generated_text(c.get("message")) for c in choices if isinstance(c, Mapping))


def first_choice(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """``choices[0]``, or an empty mapping: usage chunks may carry ``choices: []``."""
    choices = data.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], Mapping):
        return choices[0]
    return {}


def error_text(error: Any) -> str:
    """A mid-stream (or per-choice) error object as one line."""
    if isinstance(error, Mapping):
        code = error.get("code")
        message = error.get("message") or "error"
        return f"{message} (code {code})" if code is not None else str(message)
    return str(error)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
