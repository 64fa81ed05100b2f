"""The ``Gateway``: what AIMS code calls, and where every call's usage event is born.

    result = await gateway.chat(model=..., messages=..., job_id=..., agent=...)
    async for piece in gateway.stream(model=..., messages=..., job_id=..., agent=...):
        ...  # text deltas (str), then the ChatResult

Before a call, ``admission.admit`` checks the job, the agent and the model and reserves
the estimated cost under hard budgets; the call's usage event carries the
``reservation_id``, which settles that reservation; a call that ends without a usage event
(refused upstream before any token, a stream that never started or brought nothing)
releases its reservation at once rather than holding the headroom until it expires.
Every upstream attempt that spent tokens (one answered 2xx that the chain then gave up on,
a broken body say, too: with status ``error``), or may have (sent whole, then no answer
within the timeout or the connection lost: status ``error``, ``attributes.outcome``
``timeout`` or ``connection_lost``, usage estimated from the prompt), emits exactly one
usage event (id = the generation id, else a ``luc-`` id of its own, fixed before it is
spooled) to the sink: the ledger in-process, the emitter elsewhere. A failure to
record never turns a delivered answer into an error: the sink keeps what it cannot deliver
(a local spool), and ``_meter`` lets nothing escape into the answer.

Metering never depends on the caller staying: a non-streaming call runs in a shielded
task, and a stream is read to its end by a task of its own, so a caller that goes away
mid-stream still gets the whole generation recorded — the provider bills it all anyway
(closing early stops billing only with some providers, and loses the usage, which comes
in the last chunk).

Nor does it depend on the call ending. A stream still going after its deadline
(``stream_deadline_seconds``: a provider sending keep-alives, or trickling, for ever) is
cut; and ``aclose`` cancels the calls still running after its grace period. Either way a
call the provider answered (2xx) is metered with what is known of it, as a broken stream
is (status ``error``, the provider's usage if it came, else the estimate), and its
usage event settles its reservation; so is one cancelled while waiting for the answer to a
request it sent whole (metered on its prompt); one cancelled before that releases it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
import structlog

from service.errors import AnswerDeadlineError, GatewayError
from service.errors import UpstreamUnavailableError as Unavailable
from service.gateway.admission import DEFAULT_MAX_TOKENS, Admitted, admit
from service.gateway.chain import Chain, OnBilled, Provider, UpstreamStream
from service.gateway.models import (
    DEFAULT_MODEL,
    CallContext,
    ChatRequest,
    ChatResult,
    Completion,
    Cost,
    ProviderUsage,
    StreamHandle,
)
from service.gateway.ports import AdmissionLookup, BudgetGate, CatalogSource, UsageSink
from service.gateway.streaming import read_stream
from service.gateway.upstream import CALL_PROGRESS, CallProgress
from service.gateway.usage import (
    LUC_ID_PREFIX,
    billed_fields,
    counted,
    estimated_usage,
    merged,
    usage_event,
)
from service.ingest.models import UsageEventIn
from service.pricing.catalog import Catalog
from service.pricing.cost import event_cost
from service.wire import money_text

log = structlog.get_logger("luc.gateway")

MAX_MODEL_ATTRIBUTE = 400
"""Bytes (as JSON) of ``attributes.upstream_model`` kept (real model ids are far shorter)."""
MAX_ERROR_ATTRIBUTE = 1500
"""Bytes (as JSON) of ``attributes.error`` kept."""


BROKEN_STREAM_ADVICE = (
    "the provider's stream broke off after it had begun: its tokens are spent and part of "
    "the answer was sent, so LUC did not send the call to another provider; try again"
)
"""The advice of a stream that fails once open: no fallback follows it (its first bytes
may be with the caller already), unlike a failure before any byte."""
SHUTDOWN_ADVICE = "LUC shut down before the answer ended; its tokens so far are billed; try again"
SHUTDOWN_ERROR = "LUC shut down before the answer was read"
PROCESS_ENDED_ERROR = (
    "LUC's process ended before the answer was read; billed on its prompt, estimated"
)
"""The error of a held call booked by the next process (``Gateway._hold``)."""
PROCESS_ENDED_RECORDED_ERROR = (
    "LUC's process ended before the answer was read; billed on the provider's record of it"
)
"""...when the provider's record of the call was found (``Gateway.held_usage``)."""
STREAM_DEADLINE_SECONDS = 600.0
"""The default of ``LUC_GATEWAY_STREAM_DEADLINE_SECONDS`` (see ``GatewaySettings``)."""
CANCELLED_CALLS_SECONDS = 10.0
"""How long ``aclose`` waits for the calls it cancelled to meter what they know (a journal
append) or release their reservations before it stops waiting."""


class Gateway:
    def __init__(
        self,
        chain: Chain,
        sink: UsageSink,
        catalog: CatalogSource,
        *,
        budgets: BudgetGate | None = None,
        default_model: str = DEFAULT_MODEL,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        lookup: AdmissionLookup | None = None,
        stream_deadline_seconds: float | None = STREAM_DEADLINE_SECONDS,
    ) -> None:
        """``lookup``: the catalog and whether ``budgets`` may hold anything, in one look
        (``recording.adapters.DatabaseLookup`` inside LUC); without it, ``catalog`` and
        ``budgets`` are asked one after the other. ``stream_deadline_seconds``: how long a
        stream may go on once the provider answered (``None``: for ever)."""
        self.stream_deadline_seconds = stream_deadline_seconds
        self.chain = chain
        self.lookup = lookup
        self.default_max_tokens = default_max_tokens
        self.sink = sink
        self.catalog = catalog
        self.budgets = budgets
        self.default_model = default_model
        self.clock = clock
        self._tasks: set[asyncio.Task[Any]] = set()

    # The client API ---------------------------------------------------------------------------

    def request(
        self,
        *,
        messages: Sequence[Any],
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        **extra: Any,
    ) -> ChatRequest:
        """An OpenAI chat body; ``extra`` carries further fields (``tools``, ``provider``…)."""
        body: dict[str, Any] = {**extra, "messages": list(messages)}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if temperature is not None:
            body["temperature"] = temperature
        return ChatRequest(model=model or self.default_model, body=body)

    async def chat(
        self,
        *,
        messages: Sequence[Any],
        job_id: str,
        agent: str,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        attributes: dict[str, Any] | None = None,
        customer_id: str | None = None,
        **extra: Any,
    ) -> ChatResult:
        """One chat completion; raises a ``GatewayError`` (with advice) when it fails.
        ``customer_id``: the customer the job is done for (its first call sets it)."""
        request = self.request(
            messages=messages, model=model, max_tokens=max_tokens, temperature=temperature, **extra
        )
        result, completion = await self.complete(
            request, CallContext(job_id, agent, attributes or {}, customer_id)
        )
        if completion.error:
            raise Unavailable(
                f"the answer failed after {result.tokens.output} output tokens (billed): "
                f"{completion.error}",
                provider=result.provider,
            )
        return result

    async def stream(
        self,
        *,
        messages: Sequence[Any],
        job_id: str,
        agent: str,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        attributes: dict[str, Any] | None = None,
        customer_id: str | None = None,
        **extra: Any,
    ) -> AsyncIterator[str | ChatResult]:
        """Text deltas as they come, then the ``ChatResult``."""
        request = self.request(
            messages=messages, model=model, max_tokens=max_tokens, temperature=temperature, **extra
        )
        context = CallContext(job_id, agent, attributes or {}, customer_id)
        handle = await self.open_stream(request, context)
        async for event in handle.events():
            if delta := event.delta:
                yield delta
        yield await handle.result()

    # What the proxy uses too --------------------------------------------------------------------

    async def complete(
        self, request: ChatRequest, context: CallContext
    ) -> tuple[ChatResult, Completion]:
        """A non-streaming call: the metered result and the provider's answer as sent."""
        admitted = await self._admit(request, context)
        return await asyncio.shield(self._spawn(self._complete(admitted, context)))

    async def open_stream(self, request: ChatRequest, context: CallContext) -> StreamHandle:
        """Open a stream (retries and fall-through happen here, before its first byte)."""
        admitted = await self._admit(request, context)
        handle = StreamHandle()
        self._spawn(self._run_stream(admitted, context, handle))
        handle.provider = await asyncio.shield(handle.opened)
        return handle

    async def aclose(
        self, grace_seconds: float = 30.0, cancelled_seconds: float = CANCELLED_CALLS_SECONDS
    ) -> None:
        """Let calls in flight finish and meter (up to ``grace_seconds``), then cancel them:
        each meters what it knows of an answer it had (its usage event to the sink, whose
        journal keeps it for the next process if the sink cannot record it now) or
        releases its reservation, for up to ``cancelled_seconds``. Call it before closing
        the sink."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(list(self._tasks), timeout=grace_seconds)
        if not pending:
            return
        log.warning("gateway_calls_cancelled_at_shutdown", calls=len(pending))
        for task in pending:
            task.cancel()
        _, stuck = await asyncio.wait(pending, timeout=cancelled_seconds)
        if stuck:
            log.error("gateway_calls_not_ended_at_shutdown", calls=len(stuck))

    # Inside ---------------------------------------------------------------------------------------

    async def _admit(self, request: ChatRequest, context: CallContext) -> Admitted:
        return await admit(
            request,
            context,
            catalog=self.catalog,
            budgets=self.budgets,
            clock=self.clock,
            default_max_tokens=self.default_max_tokens,
            lookup=self.lookup,
        )

    async def _release(self, admitted: Admitted) -> None:
        """The call ends without a usage event: free what its reservation holds now."""
        if self.budgets is not None and admitted.reservation_id is not None:
            await self.budgets.release(admitted.reservation_id)

    def _spawn(self, work: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        # A caller that went away never reads the outcome; mark it read (it was logged).
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return task

    async def _complete(
        self, admitted: Admitted, context: CallContext
    ) -> tuple[ChatResult, Completion]:
        progress = self._progress(admitted, context, streamed=False)
        CALL_PROGRESS.set(progress)  # this task's context: the providers note a 2xx in it
        try:
            provider, completion = await self.chain.complete(
                admitted.request, self._billed_meter(admitted, context, progress)
            )
        except asyncio.CancelledError:
            await self._cut_short(admitted, context, progress, streamed=False)
            raise
        except BaseException:
            # No answer, so no usage event for the call (a paid attempt the chain gave up on
            # was metered on its own): release the hold (a refusal, an outage).
            self._drop_hold(progress)
            await asyncio.shield(self._release(admitted))
            raise
        reported = completion.usage
        cancelled = False
        if counted(reported) is None and completion.generation_id:
            try:
                reported = merged(reported, await provider.usage_after(completion.generation_id))
            except asyncio.CancelledError:
                cancelled = True  # shutting down: the answer is metered on its estimate
        usage = counted(reported) or estimated_usage(
            admitted.request.prompt_text(), completion.generated or completion.text
        )
        usage = merged(reported, usage) or usage
        result = await self._meter(
            admitted,
            context,
            provider=provider.name,
            generation_id=completion.generation_id,
            answered_model=completion.model or usage.model,
            usage=usage,
            text=completion.text,
            finish_reason=completion.finish_reason,
            error=completion.error,
            streamed=False,
            held=self._take_hold(progress),
        )
        if cancelled:
            raise asyncio.CancelledError
        return result, completion

    async def _cut_short(
        self, admitted: Admitted, context: CallContext, progress: CallProgress, *, streamed: bool
    ) -> None:
        """A call cancelled (LUC shutting down) before its answer was read: one whose request
        went out whole, or whose answer had begun (2xx), may be run and billed by the
        provider, so it is metered on its prompt, all that is known of it; any other frees
        its hold."""
        if progress.answered is None:
            self._drop_hold(progress)
            await asyncio.shield(self._release(admitted))
            return
        name, generation_id = progress.answered
        await self._meter(
            admitted,
            context,
            provider=name,
            generation_id=generation_id,
            answered_model=None,
            usage=estimated_usage(admitted.request.prompt_text(), ""),
            text="",
            finish_reason=None,
            error=SHUTDOWN_ERROR,
            streamed=streamed,
            held=self._take_hold(progress),
        )

    def _billed_meter(
        self, admitted: Admitted, context: CallContext, progress: CallProgress | None = None
    ) -> OnBilled:
        """What the chain calls for an attempt answered 2xx that failed all the same."""

        async def meter(provider: Provider, error: GatewayError) -> None:
            billed = error.billed
            assert billed is not None
            try:
                reported = provider.usage_of(billed.usage) if billed.usage is not None else None
                if counted(reported) is None and billed.generation_id:
                    reported = merged(reported, await provider.usage_after(billed.generation_id))
                # No answer text: the prompt is all that is known.
                usage = counted(reported) or estimated_usage(admitted.request.prompt_text(), "")
                usage = merged(reported, usage) or usage
                # No reservation_id: the call goes on (or fails), and whatever answers
                # last settles the reservation that holds its estimate.
                await self._meter(
                    admitted,
                    context,
                    provider=provider.name,
                    generation_id=billed.generation_id,
                    answered_model=billed.model or usage.model,
                    usage=usage,
                    text="",
                    finish_reason=None,
                    error=error.detail,
                    streamed=False,
                    settles=False,
                    outcome=billed.outcome,
                    held=None if progress is None else self._take_hold(progress),
                )
            except Exception:
                # Metering never decides the call's outcome; the error is logged whole.
                log.exception(
                    "billed_attempt_not_metered",
                    provider=provider.name,
                    generation_id=billed.generation_id,
                )
            if progress is not None:
                progress.answered = None  # metered (or logged): not again if cancelled later

        return meter

    async def _run_stream(
        self, admitted: Admitted, context: CallContext, handle: StreamHandle
    ) -> None:
        progress = self._progress(admitted, context, streamed=True)
        CALL_PROGRESS.set(progress)  # this task's context: a request sent whole is noted in it
        try:
            provider, upstream = await self.chain.open_stream(
                admitted.request, self._billed_meter(admitted, context, progress)
            )
        except Exception as exc:  # the caller of open_stream raises it
            # Released before the caller hears of the failure: a retry it makes at once
            # finds the headroom free.
            self._drop_hold(progress)
            await self._release(admitted)
            handle.opened.set_exception(exc)
            handle.opened.exception()  # retrieved even if that caller went away
            return
        except BaseException:
            handle.opened.cancel()
            await self._cut_short(admitted, context, progress, streamed=True)
            raise
        handle.opened.set_result(provider.name)
        result: ChatResult | None = None
        cancelled = False
        try:
            result, cancelled = await self._pump(
                admitted, context, provider, upstream, handle, progress
            )
        except Exception as exc:  # a bug must not hang the caller
            log.exception("stream_pump_failed", provider=provider.name)
            handle.error = Unavailable(f"the stream failed inside LUC: {exc}")
        finally:
            handle._queue.put_nowait(None)
            if not handle._done.done():
                handle._done.set_result(result)
        if result is None:
            # LUC failed before metering (a bug, logged): no usage event names the
            # reservation, so nothing would ever settle it.
            self._drop_hold(progress)
            await self._release(admitted)
        if cancelled:  # metered, now cancelled as asked
            raise asyncio.CancelledError

    async def _pump(
        self,
        admitted: Admitted,
        context: CallContext,
        provider: Provider,
        upstream: UpstreamStream,
        handle: StreamHandle,
        progress: CallProgress,
    ) -> tuple[ChatResult, bool]:
        """The stream's metered result, and whether its task was cancelled meanwhile (then
        metered on what it had, and to end cancelled)."""
        read = await read_stream(provider, upstream, handle, self.stream_deadline_seconds)
        generation_id, text, error = read.generation_id, read.text, read.error
        reported = read.usage
        cancelled = read.cancelled
        if error is not None:
            failed = (
                f"the stream failed after {len(text)} characters (tokens spent are billed): {error}"
            )
            if read.cut:
                handle.error = AnswerDeadlineError(failed, provider=provider.name)
            else:
                advice = SHUTDOWN_ADVICE if read.cancelled else BROKEN_STREAM_ADVICE
                handle.error = Unavailable(failed, provider=provider.name, advice=advice)
        if counted(reported) is None and generation_id and not cancelled:
            try:
                reported = merged(reported, await provider.usage_after(generation_id))
            except asyncio.CancelledError:
                cancelled = True  # shutting down: no more waiting, the estimate below
        # The provider answered 2xx: the call is paid for even when no chunk came (only
        # keep-alives, a stall, a body that is no stream), as a plain call's broken answer
        # is; the prompt, estimated, is all that is known then.
        usage = counted(reported) or estimated_usage(admitted.request.prompt_text(), read.generated)
        usage = merged(reported, usage) or usage
        result = await self._meter(
            admitted,
            context,
            provider=provider.name,
            generation_id=generation_id,
            answered_model=read.answered_model or usage.model,
            usage=usage,
            text=text,
            finish_reason=read.finish_reason,
            error=error,
            streamed=True,
            held=self._take_hold(progress),
        )
        return result, cancelled

    def _event(
        self,
        admitted: Admitted,
        context: CallContext,
        *,
        provider: str,
        generation_id: str | None,
        answered_model: str | None,
        usage: ProviderUsage,
        error: str | None,
        streamed: bool,
        settles: bool,
        outcome: str | None,
    ) -> tuple[str, UsageEventIn]:
        """The attempt's usage event, and the model it is booked under."""
        model, upstream = _booked_model(
            admitted.catalog, admitted.request.model, answered_model, admitted.occurred_at
        )
        attributes: dict[str, Any] = {"streamed": streamed, **upstream}
        if error:
            attributes["error"] = _storable(error, MAX_ERROR_ATTRIBUTE)
        if outcome:
            attributes["outcome"] = outcome
        return model, usage_event(
            generation_id=generation_id,
            occurred_at=admitted.occurred_at,
            context=context,
            provider=provider,
            model=model,
            usage=usage,
            status="error" if error else "ok",
            attributes=attributes,
            reservation_id=admitted.reservation_id if settles else None,
        )

    def _progress(
        self, admitted: Admitted, context: CallContext, *, streamed: bool
    ) -> CallProgress:
        """A call's progress, holding its usage in the sink once its request went out whole
        to a provider, and again under the generation id when the provider answers 2xx."""
        progress = CallProgress()

        def answered(provider: str, generation_id: str | None) -> None:
            if generation_id is None and progress.held is not None:
                return  # answered 2xx without an id: the hold made when it was sent stands
            self._hold(admitted, context, progress, provider, generation_id, streamed)

        progress.on_answered = answered
        progress.on_refused = lambda: self._drop_hold(progress)
        return progress

    def _hold(
        self,
        admitted: Admitted,
        context: CallContext,
        progress: CallProgress,
        provider: str,
        generation_id: str | None,
        streamed: bool,
    ) -> None:
        """The request went out whole to ``provider`` (``generation_id`` None), or it
        answered 2xx: from now on the call is paid for, or may be (a provider may run a
        request whose answer never comes, as a timeout is billed). Should this process end
        before the answer is read and metered (a crash, a ``SIGKILL`` while the provider
        thinks or mid-stream), the next one books what is known now (the prompt,
        estimated; ``outcome`` ``process_ended``; the provider's own record when it keeps
        one, ``RecordingSink.held_usage``) from the sink's journal, under the id the call's
        own usage will have (the generation id, else one fixed here); the call's usage
        supersedes the hold as it is made durable, and a refusal (no 2xx) drops it."""
        # The hold made when the request went out (or an earlier attempt's, should one be
        # left): replaced in the same write.
        earlier = self._take_hold(progress)
        _, event = self._event(
            admitted,
            context,
            provider=provider,
            generation_id=generation_id,
            answered_model=None,
            usage=estimated_usage(admitted.request.prompt_text(), ""),
            error=PROCESS_ENDED_ERROR,
            streamed=streamed,
            settles=True,
            outcome="process_ended",
        )
        try:
            held = self.sink.hold(event, None if earlier is None else earlier[0])
        except Exception:  # the call goes on; its usage is made durable at its end as ever
            log.exception("usage_not_held", event_id=event.id)
            progress.held = earlier  # still in force
            return
        progress.held = None if held is None else (held, event.id)

    async def held_usage(self, held: UsageEventIn) -> UsageEventIn:
        """What to book for a call held by a process that ended before it read the answer
        (``_hold``): the provider's own record of the call, when it keeps one under the
        call's id (OpenRouter's ``/generation``: what it generated before the connection
        dropped, and what it charged); else the hold as it is, the prompt estimated."""
        provider = next((p for p in self.chain.providers if p.name == held.provider), None)
        if provider is None or held.id.startswith(LUC_ID_PREFIX):
            return held  # no provider's id: nothing to look up
        usage = await provider.usage_after(held.id, patient=True)
        if usage is None:
            return held
        if not usage.counted:  # the record's bill without its counts: the hold's estimate
            cost = usage.provider_cost_usd
            return msgspec.structs.replace(
                held, provider_cost_usd=None if cost is None else money_text(cost)
            )
        attributes = {
            **(held.attributes or {}),
            "error": PROCESS_ENDED_RECORDED_ERROR,
            "usage_source": usage.source,
        }
        model = held.model
        if usage.model and usage.model != held.model:  # booked as a call metered whole is
            when = datetime.fromisoformat(held.occurred_at)
            model, upstream = _booked_model(await self.catalog(), held.model, usage.model, when)
            attributes.update(upstream)
        return msgspec.structs.replace(
            held, model=model, **billed_fields(usage), attributes=attributes
        )

    @staticmethod
    def _take_hold(progress: CallProgress) -> tuple[int, str] | None:
        held, progress.held = progress.held, None
        return held

    def _drop_hold(self, progress: CallProgress) -> None:
        """The held attempt ends without usage of its own (nothing was metered)."""
        held = self._take_hold(progress)
        if held is None:
            return
        try:
            self.sink.release(held[0])
        except Exception:
            log.exception("usage_hold_not_released", event_id=held[1])

    async def _meter(
        self,
        admitted: Admitted,
        context: CallContext,
        *,
        provider: str,
        generation_id: str | None,
        answered_model: str | None,
        usage: ProviderUsage,
        text: str,
        finish_reason: str | None,
        error: str | None,
        streamed: bool,
        settles: bool = True,
        outcome: str | None = None,
        held: tuple[int, str] | None = None,
    ) -> ChatResult:
        """Emit the attempt's one usage event; price it as the ledger will. ``settles``:
        whether the event carries (and so settles) the call's reservation; ``outcome``:
        ``timeout`` or ``connection_lost`` for an attempt sent whole that got no answer
        (``attributes.outcome``, beside ``status`` ``error``); ``held``: the attempt's hold
        (``_hold``), which the event supersedes, and whose id it takes when the provider
        gave none."""
        model, event = self._event(
            admitted,
            context,
            provider=provider,
            generation_id=generation_id or (held[1] if held is not None else None),
            answered_model=answered_model,
            usage=usage,
            error=error,
            streamed=streamed,
            settles=settles,
            outcome=outcome,
        )
        catalog, when = admitted.catalog, admitted.occurred_at
        try:
            await self.sink.emit(event, None if held is None else held[0])
        except Exception:
            # Sinks keep what they cannot deliver (a spool) and should not raise; if one does
            # anyway, the answer is still delivered (it was paid for) and the usage is logged
            # whole, to be replayed by hand.
            log.exception("usage_event_not_emitted", usage=msgspec.json.encode(event).decode())
        # Priced as the ledger prices the event (a stub answer at zero: never billed).
        quote = catalog.quote(model, when).for_provider(provider)
        assert quote.price is not None  # checked in _prepare, or just above
        tokens = usage.tokens()
        cost = event_cost(tokens, quote.price)
        return ChatResult(
            text=text,
            cost=Cost(
                usd=cost,
                provider_usd=usage.provider_cost_usd,
                catalog_version=quote.version.id if quote.version else None,
            ),
            tokens=tokens,
            provider=provider,
            model=model,
            generation_id=event.id,
            finish_reason=finish_reason,
        )


def _booked_model(
    catalog: Catalog, asked: str, answered: str | None, when: datetime
) -> tuple[str, dict[str, str]]:
    """The model a call is booked under, and the attribute naming the one that answered
    when it is not the one asked for (OpenRouter's fallbacks): booked under the answering
    model when LUC can price it, else under the one asked for."""
    if not answered or answered == asked:
        return asked, {}
    upstream = {"upstream_model": _storable(answered, MAX_MODEL_ATTRIBUTE)}
    other = catalog.quote(answered, when)
    return (other.model_id if other.price is not None else asked), upstream


def _storable(text: str, limit: int) -> str:
    """A provider's text (a model name, an error message) as the ledger can keep it in
    the event's attributes: at most ``limit`` bytes of JSON (attributes over 4 KiB would
    park the event; a control character takes six), clipped with "…", and without NUL,
    which PostgreSQL text cannot hold (shown as U+FFFD)."""
    text = text.replace("\x00", "\ufffd")
    if len(msgspec.json.encode(text)) <= limit:
        return text
    while text and len(msgspec.json.encode(text + "…")) > limit:
        text = text[: len(text) * 3 // 4]
    return text + "…"
