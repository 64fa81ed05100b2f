"""The draw rule of prepaid credits (SPEC §12): what each priced entry takes from, or gives
back to, its customer's grants. Pure: no I/O; ``customers.credits`` runs it on rows it has
locked.

- A positive price draws on the customer's grants that are live when the entry is recorded
  (no expiry, or an expiry after that instant) and were when its call was made (an event
  stamped ahead of the clock, as far as ingest allows, is no call a grant that expires
  before it pays for: "expired grants stop counting at their expiry"), the earliest expiry
  first, grants without
  expiry last, ties by creation; from each as much as it holds, so a balance is never
  negative. What no grant covers is simply not drawn: the invoice asks for it.
- A negative price (an adjustment that lowers what an event is billed: a re-pricing, a
  re-rating's reversal) gives back what the event drew, to the grants it drew on, the one
  drawn last first, each at most what the event still holds of it (so never above the
  grant's amount). Credit goes back to a grant even after it expired: it returns to where
  it came from, and counts again only if that grant is live. Beyond what the event drew,
  nothing is given back: that part of the change was paid as money, and the invoice's
  credit note owes it as money.
- A negative price that leaves the event a price (a re-pricing's change of price: 0.50 to
  0.25) is drawn as a re-rating books the same fall, a reversal and a new booking: the
  event's whole price given back, then the price it keeps drawn by the rules below. So
  the credits pay what the event still costs before any money does (a 0.50 call paid half
  by credits, fallen to 0.25, stays paid by them), whichever of the two made the fall.
- A positive price of an event whose negative entry, earlier in the same batch, could not
  give everything back (a re-rating's reversal and new booking of a call paid in money)
  first takes up that part: what was paid in money stays paid in money, and only the rest
  draws. Otherwise a call billed and paid before its customer bought credits would, once
  re-rated, draw its whole price again from the new credits, and the follow-up would apply
  credits far beyond its total (an invoice's amount due is never below zero: lost). That
  part may still draw the credits the batch's own negative entries gave back and no draw
  of it took again, whichever comes first in the batch: credits burn before money, so a
  re-rating that frees credits of some calls pays the customer's other calls of it with
  them, as they were before (a month's
  re-rating that its minimum line partly offsets must not leave credits back and money
  owed on a credit note, which never asks for money).
- A positive price of an event whose negative entry, earlier in the same batch, gave
  credit back to a grant that has expired since (a re-rating of a call an expired grant
  paid) first draws that grant again, up to what was given back: the call was made while
  the grant was live and stays paid by it. Otherwise a re-rating that lowers the price of
  such a call would draw the new price from the customer's live credits, or ask it in
  money, for a call already paid; the expired grant keeps only the difference.
- A zero price draws nothing.

Entries are taken in ledger order (their ids), so a reversal and a new booking of one
event in one batch give back, then draw, as they would in two batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from service.money import EXACT, exact_sum


@dataclass(frozen=True, slots=True)
class Grant:
    """A grant of prepaid credits as it stands before the draws."""

    id: int
    customer_id: str
    amount_usd: Decimal
    remaining_usd: Decimal
    expires_at: datetime | None
    created_at: datetime

    def live_at(self, at: datetime) -> bool:
        """Whether the grant counts at ``at``: it stops at its expiry."""
        return self.expires_at is None or at < self.expires_at


@dataclass(frozen=True, slots=True)
class PricedEntry:
    """A ledger entry of a customer's job with a known, non-zero price."""

    entry_id: int
    event_id: str
    customer_id: str
    price_usd: Decimal
    occurred_at: datetime
    """When its event's call was made."""


@dataclass(frozen=True, slots=True)
class Draw:
    """What one entry takes from one grant; negative: what it gives back."""

    entry_id: int
    event_id: str
    grant_id: int
    customer_id: str
    amount_usd: Decimal


@dataclass(frozen=True, slots=True)
class DrawPlan:
    draws: list[Draw]
    remaining: dict[int, Decimal]
    """Every grant's remaining credit after the draws, by grant id."""


def draw_order(grants: Iterable[Grant]) -> list[Grant]:
    """Earliest expiry first, grants without expiry last; ties by creation (then id)."""
    return sorted(
        grants,
        key=lambda g: (g.expires_at is None, g.expires_at or g.created_at, g.created_at, g.id),
    )


def balance(grants: Iterable[Grant], remaining: Mapping[int, Decimal], at: datetime) -> Decimal:
    """What the live grants hold at ``at``, with ``remaining`` as their remaining credit."""
    return exact_sum(remaining[g.id] for g in grants if g.live_at(at))


def plan_draws(
    entries: Sequence[PricedEntry],
    grants: Sequence[Grant],
    drawn: Mapping[str, Sequence[tuple[int, Decimal]]],
    at: datetime,
    priced_before: Mapping[tuple[str, str], Decimal] | None = None,
) -> DrawPlan:
    """The draws of ``entries`` on ``grants`` (every grant of their customers).

    ``drawn`` holds, for the events whose entries give credit back, what each event holds
    of each grant so far (its draws net of what it gave back), oldest draw first. ``at`` is
    the instant the entries are recorded: it decides which grants are live.
    ``priced_before``: those events' price for each customer before these entries (event,
    customer) → price; none: zero.
    """
    priced_before = priced_before or {}
    remaining = {g.id: g.remaining_usd for g in grants}
    amounts = {g.id: g.amount_usd for g in grants}
    owners = {g.id: g.customer_id for g in grants}
    live = {g.id for g in grants if g.live_at(at)}
    live_in_order: dict[str, list[Grant]] = {}
    for grant in draw_order(g for g in grants if g.live_at(at)):
        live_in_order.setdefault(grant.customer_id, []).append(grant)
    # What each event holds of each grant, the grant it drew on last at the end (a dict
    # keeps insertion order; a new draw moves its grant to the end).
    holding: dict[str, dict[int, Decimal]] = {
        event: {grant_id: amount for grant_id, amount in pairs if amount > 0}
        for event, pairs in drawn.items()
    }
    # What each event's negative entries of this batch left as money (event, customer).
    paid_in_money: dict[tuple[str, str], Decimal] = {}
    # Credits the batch's negative entries gave back that no draw of it took again, by
    # customer: all that a part paid in money may draw.
    freed: dict[str, Decimal] = {}
    # What each event's negative entries of this batch gave back to grants no longer live
    # (event, customer) → grant → amount: its new booking draws on them again first.
    back_to_expired: dict[tuple[str, str], dict[int, Decimal]] = {}
    # Each entry's draw on each grant (negative: given back), in the order first drawn.
    net: dict[tuple[int, int], Draw] = {}
    # What each entry's price left to money (paid in money before, or no grant covered).
    unconverted: list[tuple[PricedEntry, Decimal]] = []

    def record(entry: PricedEntry, grant_id: int, amount: Decimal) -> None:
        earlier = net.get((entry.entry_id, grant_id))
        total = amount if earlier is None else EXACT.add(earlier.amount_usd, amount)
        net[(entry.entry_id, grant_id)] = _draw(entry, grant_id, total)

    def take(entry: PricedEntry, price: Decimal) -> None:
        held = holding.setdefault(entry.event_id, {})
        key = (entry.event_id, entry.customer_id)
        # A re-booking of a call its expired grant paid is paid by that grant again, as
        # far as its reversal gave back to it: the call was made while the grant was
        # live. Otherwise a fall in price would draw the new price from live credits
        # (or ask it in money) for a call the expired credits had paid.
        expired_back = back_to_expired.get(key, {})
        for grant_id in list(expired_back):
            if price == 0:
                break
            part = min(price, expired_back[grant_id], remaining[grant_id])
            if part <= 0:
                continue
            remaining[grant_id] = EXACT.subtract(remaining[grant_id], part)
            expired_back[grant_id] = EXACT.subtract(expired_back[grant_id], part)
            price = EXACT.subtract(price, part)
            held[grant_id] = EXACT.add(held.pop(grant_id, Decimal(0)), part)
            record(entry, grant_id, part)
        in_money = min(price, paid_in_money.get(key, Decimal(0)))
        if in_money:
            paid_in_money[key] = EXACT.subtract(paid_in_money[key], in_money)
        own = EXACT.subtract(price, in_money)
        # The price's own part draws first, and takes up freed credits as it goes.
        left = freed.get(entry.customer_id, Decimal(0))
        converted = min(in_money, max(Decimal(0), EXACT.subtract(left, own)))
        drawn_now = draw_live(entry, EXACT.add(own, converted))
        if left:
            freed[entry.customer_id] = max(Decimal(0), EXACT.subtract(left, drawn_now))
        # Left to money: the part paid in money before, and what no live grant covered.
        if (short := EXACT.subtract(price, drawn_now)) > 0:
            unconverted.append((entry, short))

    def draw_live(entry: PricedEntry, owed: Decimal) -> Decimal:
        """Draw ``owed`` on the customer's live grants in order; what was drawn."""
        held = holding.setdefault(entry.event_id, {})
        drawn_now = Decimal(0)
        for grant in live_in_order.get(entry.customer_id, []):
            if owed == 0:
                break
            if not grant.live_at(entry.occurred_at):
                continue  # expired before the call was made
            part = min(owed, remaining[grant.id])
            if part == 0:
                continue
            remaining[grant.id] = EXACT.subtract(remaining[grant.id], part)
            owed = EXACT.subtract(owed, part)
            drawn_now = EXACT.add(drawn_now, part)
            held[grant.id] = EXACT.add(held.pop(grant.id, Decimal(0)), part)
            record(entry, grant.id, part)
        return drawn_now

    def give(entry: PricedEntry, owed: Decimal) -> None:
        held = holding.setdefault(entry.event_id, {})
        key = (entry.event_id, entry.customer_id)
        for grant_id in reversed(list(held)):
            if owed == 0:
                break
            if owners.get(grant_id) != entry.customer_id:
                continue  # what the event drew for another customer stays theirs
            room = EXACT.subtract(amounts[grant_id], remaining[grant_id])
            part = min(owed, held[grant_id], room)
            if part <= 0:
                continue
            remaining[grant_id] = EXACT.add(remaining[grant_id], part)
            owed = EXACT.subtract(owed, part)
            held[grant_id] = EXACT.subtract(held[grant_id], part)
            if held[grant_id] == 0:
                del held[grant_id]
            if grant_id in live:  # given back to an expired grant, it pays nothing
                freed[entry.customer_id] = EXACT.add(freed.get(entry.customer_id, Decimal(0)), part)
            else:  # but the event's own new booking, which it paid before
                returned = back_to_expired.setdefault(key, {})
                returned[grant_id] = EXACT.add(returned.get(grant_id, Decimal(0)), part)
            record(entry, grant_id, part.copy_negate())
        if owed > 0:
            paid_in_money[key] = EXACT.add(paid_in_money.get(key, Decimal(0)), owed)

    # Each event's price for its customer so far (before the batch: ``priced_before``).
    running: dict[tuple[str, str], Decimal] = {}
    for entry in sorted(entries, key=lambda e: e.entry_id):
        key = (entry.event_id, entry.customer_id)
        before = running.get(key, priced_before.get(key, Decimal(0)))
        after = EXACT.add(before, entry.price_usd)
        running[key] = after
        if entry.price_usd > 0:
            take(entry, entry.price_usd)
        elif entry.price_usd < 0 and before > 0 and after > 0:
            # A fall that leaves a price (a re-pricing's change of price) is drawn as a
            # re-rating books the same fall, a reversal and a new booking: the whole price
            # given back, the new one drawn. Giving back only the fall, up to what the
            # event drew, returned credits that the remaining price then asked in money.
            give(entry, before)
            take(entry, after)
        elif entry.price_usd < 0:
            give(entry, entry.price_usd.copy_negate())
    # A price left to money before the batch freed credits (a call paid in money booked
    # again, a rise no grant covered, before a fall of another call in ledger order) is
    # paid by them too, as it would be had it come after: credits burn before money,
    # whatever order the batch's ids give.
    for entry, amount in unconverted:
        left = freed.get(entry.customer_id, Decimal(0))
        if left > 0:
            drawn_now = draw_live(entry, min(amount, left))
            freed[entry.customer_id] = max(Decimal(0), EXACT.subtract(left, drawn_now))
    draws = [d for d in net.values() if d.amount_usd != 0]
    return DrawPlan(draws=draws, remaining=remaining)


def _draw(entry: PricedEntry, grant_id: int, amount: Decimal) -> Draw:
    return Draw(entry.entry_id, entry.event_id, grant_id, entry.customer_id, amount)
