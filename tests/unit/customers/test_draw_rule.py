"""The draw rule of prepaid credits (``customers.draw_rule``), on hand-checked amounts:
earliest expiry first, no expiry last, ties by creation; never below zero; expired grants
do not count; a negative price gives back what its event drew, the grant drawn last first,
never more than the event holds of it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from service.customers.draw_rule import (
    Draw,
    Grant,
    PricedEntry,
    balance,
    draw_order,
    plan_draws,
)

AT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
CREATED = datetime(2026, 11, 1, tzinfo=UTC)


def grant(
    grant_id: int,
    amount: str,
    *,
    remaining: str | None = None,
    expires_in_days: float | None = None,
    customer: str = "acme",
    created_minutes: int = 0,
) -> Grant:
    return Grant(
        id=grant_id,
        customer_id=customer,
        amount_usd=Decimal(amount),
        remaining_usd=Decimal(remaining if remaining is not None else amount),
        expires_at=None if expires_in_days is None else AT + timedelta(days=expires_in_days),
        created_at=CREATED + timedelta(minutes=created_minutes),
    )


def entry(
    entry_id: int,
    price: str,
    event: str | None = None,
    customer: str = "acme",
    occurred_at: datetime = AT - timedelta(minutes=1),
) -> PricedEntry:
    return PricedEntry(entry_id, event or f"ev-{entry_id}", customer, Decimal(price), occurred_at)


def amounts(draws: list[Draw]) -> list[tuple[int, int, str]]:
    return [(d.entry_id, d.grant_id, str(d.amount_usd)) for d in draws]


def test_a_call_stamped_after_a_grant_expires_draws_nothing_from_it() -> None:
    # Recorded at AT, while the grant is live (it expires 2 minutes later), but made 4
    # minutes after AT (ingest takes events up to 5 minutes ahead of its clock): before,
    # the grant paid for a call made after its expiry. The grant without expiry pays.
    expiring = replace(grant(1, "5"), expires_at=AT + timedelta(minutes=2))
    spare = grant(2, "5")
    ahead = entry(1, "0.20", occurred_at=AT + timedelta(minutes=4))
    before = entry(2, "0.30", occurred_at=AT + timedelta(minutes=1))
    plan = plan_draws([ahead, before], [expiring, spare], {}, AT)
    assert amounts(plan.draws) == [(1, 2, "0.20"), (2, 1, "0.30")]
    assert plan.remaining == {1: Decimal("4.70"), 2: Decimal("4.80")}


def test_grants_are_drawn_earliest_expiry_first_then_without_expiry_ties_by_creation() -> None:
    never = grant(1, "5", created_minutes=0)
    late = grant(2, "5", expires_in_days=30, created_minutes=1)
    soon = grant(3, "5", expires_in_days=10, created_minutes=2)
    soon_too_older = grant(4, "5", expires_in_days=10, created_minutes=1)
    assert [g.id for g in draw_order([never, late, soon, soon_too_older])] == [4, 3, 2, 1]


def test_an_entry_takes_from_each_grant_in_order_and_never_below_zero() -> None:
    # 3 + 4 + 2 = 9 USD of credit; charges of 2.50, 4.25 and 5.00 = 11.75.
    grants = [
        grant(1, "2", expires_in_days=60),  # no: the later expiry comes after grant 2
        grant(2, "3", expires_in_days=5),
        grant(3, "4"),  # no expiry: last
    ]
    plan = plan_draws([entry(10, "2.50"), entry(11, "4.25"), entry(12, "5.00")], grants, {}, AT)
    # Entry 10: 2.50 of grant 2 (3 → 0.50). Entry 11: 0.50 of grant 2, 2 of grant 1,
    # 1.75 of grant 3 (4 → 2.25). Entry 12: the 2.25 left; 2.75 not covered.
    assert amounts(plan.draws) == [
        (10, 2, "2.50"),
        (11, 2, "0.50"),
        (11, 1, "2"),
        (11, 3, "1.75"),
        (12, 3, "2.25"),
    ]
    assert plan.remaining == {1: Decimal(0), 2: Decimal(0), 3: Decimal(0)}
    assert balance(grants, plan.remaining, AT) == 0


def test_a_grant_at_or_past_its_expiry_does_not_count() -> None:
    expired_now = grant(1, "10", expires_in_days=0)  # expires_at == the recording instant
    expired = grant(2, "10", expires_in_days=-1)
    live = grant(3, "1", expires_in_days=1 / (24 * 3600 * 1_000_000))  # one microsecond left
    grants = [expired_now, expired, live]
    plan = plan_draws([entry(1, "3")], grants, {}, AT)
    assert amounts(plan.draws) == [(1, 3, "1")]
    assert balance(grants, plan.remaining, AT) == 0
    # The expired grants keep what they held; it no longer counts.
    assert (plan.remaining[1], plan.remaining[2]) == (Decimal(10), Decimal(10))


def test_a_zero_price_draws_nothing_and_another_customers_grants_are_never_touched() -> None:
    grants = [grant(1, "5"), grant(2, "5", customer="globex")]
    plan = plan_draws([entry(1, "0"), entry(2, "1", customer="acme")], grants, {}, AT)
    assert amounts(plan.draws) == [(2, 1, "1")]
    assert plan.remaining == {1: Decimal(4), 2: Decimal(5)}


def test_a_negative_price_gives_back_to_the_grant_drawn_last_first() -> None:
    # The event drew 2 from grant 1, then 3 from grant 2 (grant 2 drawn last).
    grants = [
        grant(1, "2", remaining="0", expires_in_days=5),
        grant(2, "10", remaining="7"),
    ]
    drawn = {"ev-a": [(1, Decimal(2)), (2, Decimal(3))]}
    plan = plan_draws([entry(20, "-4", event="ev-a")], grants, drawn, AT)
    # 3 back to grant 2 (all the event holds of it), then 1 to grant 1.
    assert amounts(plan.draws) == [(20, 2, "-3"), (20, 1, "-1")]
    assert plan.remaining == {1: Decimal(1), 2: Decimal(10)}


def test_nothing_is_given_back_beyond_what_the_event_drew() -> None:
    # The event drew 1.20 of a 1.50 charge from credits (0.30 was due as money); its price
    # is lowered by 1.50 to zero: 1.20 comes back, the 0.30 is the credit note's to repay.
    grants = [grant(1, "5", remaining="0")]
    plan = plan_draws(
        [entry(30, "-1.50", event="ev-b")], grants, {"ev-b": [(1, Decimal("1.20"))]}, AT
    )
    assert amounts(plan.draws) == [(30, 1, "-1.20")]
    assert plan.remaining == {1: Decimal("1.20")}
    # An event that drew nothing gets nothing back.
    assert plan_draws([entry(31, "-1", event="ev-c")], grants, {}, AT).draws == []


def test_credit_given_back_returns_even_to_an_expired_grant_and_stays_out_of_the_balance() -> None:
    gone = grant(1, "5", remaining="0", expires_in_days=-1)
    grants = [gone]
    plan = plan_draws([entry(40, "-2", event="ev-d")], grants, {"ev-d": [(1, Decimal(5))]}, AT)
    assert amounts(plan.draws) == [(40, 1, "-2")]
    assert plan.remaining == {1: Decimal(2)}
    assert balance(grants, plan.remaining, AT) == 0


def test_a_reversal_and_a_new_booking_in_one_batch_give_back_then_draw_again() -> None:
    # Re-rating in one batch: entry 50 takes back the 4 the event drew (all from grant 1,
    # now partly used by others), entry 51 books it again at 6.
    grants = [grant(1, "10", remaining="1", expires_in_days=3), grant(2, "10")]
    drawn = {"ev-e": [(1, Decimal(4))]}
    plan = plan_draws(
        [entry(51, "6", event="ev-e"), entry(50, "-4", event="ev-e")], grants, drawn, AT
    )
    # Ledger order: the reversal (50) first: grant 1 back to 5; then 6 = 5 of grant 1
    # (earliest expiry) and 1 of grant 2.
    assert amounts(plan.draws) == [(50, 1, "-4"), (51, 1, "5"), (51, 2, "1")]
    assert plan.remaining == {1: Decimal(0), 2: Decimal(9)}


def test_a_refund_later_in_the_same_batch_knows_the_draws_made_earlier_in_it() -> None:
    grants = [grant(1, "3", expires_in_days=1), grant(2, "3")]
    plan = plan_draws(
        [entry(60, "4", event="ev-f"), entry(61, "-2.5", event="ev-f")], grants, {}, AT
    )
    # 4 = 3 of grant 1 + 1 of grant 2; 2.5 back: 1 to grant 2 (drawn last), 1.5 to grant 1.
    assert amounts(plan.draws) == [(60, 1, "3"), (60, 2, "1"), (61, 2, "-1"), (61, 1, "-1.5")]
    assert plan.remaining == {1: Decimal("1.5"), 2: Decimal(3)}


def test_amounts_of_forty_digits_are_drawn_exactly() -> None:
    big = "123456789012345678901234567890.1234567891"
    price = "0.000000000000000000000000000000000000003"
    grants = [grant(1, big)]
    plan = plan_draws([entry(1, price)], grants, {}, AT)
    # 40 digits less 3·10⁻³⁹: no digit lost (Python's default context keeps 28).
    assert plan.remaining[1] == Decimal(
        "123456789012345678901234567890.123456789099999999999999999999999999997"
    )


def test_a_re_booking_leaves_paid_as_money_what_its_reversal_could_not_give_back() -> None:
    # The event was booked at 1.20 when its customer had no credits: the invoice asked 1.20
    # in money. A re-rating books it again at 1.40 (reversal 50, new booking 51) after a
    # grant of 5: the reversal gives back nothing (the event drew nothing), and the new
    # booking draws only the 0.20 the price rose, not the 1.20 already paid in money.
    grants = [grant(1, "5")]
    plan = plan_draws(
        [entry(50, "-1.20", event="ev-g"), entry(51, "1.40", event="ev-g")], grants, {}, AT
    )
    assert amounts(plan.draws) == [(51, 1, "0.20")]
    assert plan.remaining == {1: Decimal("4.80")}
    # Lowered to 1.00 instead: nothing to draw, the credit note repays 0.20 in money.
    plan = plan_draws(
        [entry(50, "-1.20", event="ev-g"), entry(51, "1.00", event="ev-g")], grants, {}, AT
    )
    assert plan.draws == []
    # Partly paid by credits (1.00 of 1.20): the reversal gives the 1.00 back, the 0.20
    # paid in money stays so, and the new booking of 1.40 draws 1.20.
    plan = plan_draws(
        [entry(50, "-1.20", event="ev-h"), entry(51, "1.40", event="ev-h")],
        [grant(1, "5", remaining="4")],
        {"ev-h": [(1, Decimal("1.00"))]},
        AT,
    )
    assert amounts(plan.draws) == [(50, 1, "-1.00"), (51, 1, "1.20")]
    assert plan.remaining == {1: Decimal("3.80")}


def test_credits_a_re_rating_frees_pay_its_other_calls_paid_in_money_first() -> None:
    # ev-i drew its 1.00 from the grant; ev-j, later, was paid 1.00 in money (the grant was
    # empty). Both are re-rated to 0.50 in one batch: ev-i gives back 1.00 and draws 0.50;
    # ev-j's 0.50, paid in money before, takes the 0.50 of credits the batch freed (credits
    # burn before money), as a fresh booking would: the grant ends empty, as it was.
    grants = [grant(1, "1", remaining="0")]
    plan = plan_draws(
        [
            entry(70, "-1.00", event="ev-i"),
            entry(71, "0.50", event="ev-i"),
            entry(72, "-1.00", event="ev-j"),
            entry(73, "0.50", event="ev-j"),
        ],
        grants,
        {"ev-i": [(1, Decimal("1.00"))]},
        AT,
    )
    assert amounts(plan.draws) == [(70, 1, "-1.00"), (71, 1, "0.50"), (73, 1, "0.50")]
    assert plan.remaining == {1: Decimal("0.00")}


def test_credits_given_back_to_an_expired_grant_pay_no_call_paid_in_money() -> None:
    # As above, but ev-i's grant has expired since: its 1.00 goes back to it and counts no
    # more, so ev-j's 0.50 paid in money stays so and the live grant is not drawn.
    grants = [grant(1, "1", remaining="0", expires_in_days=-1), grant(2, "5")]
    plan = plan_draws(
        [
            entry(72, "-1.00", event="ev-i"),
            entry(73, "-1.00", event="ev-j"),
            entry(74, "0.50", event="ev-j"),
        ],
        grants,
        {"ev-i": [(1, Decimal("1.00"))]},
        AT,
    )
    assert amounts(plan.draws) == [(72, 1, "-1.00")]
    assert plan.remaining == {1: Decimal("1.00"), 2: Decimal(5)}


def test_a_re_booking_of_a_call_an_expired_grant_paid_draws_that_grant_again() -> None:
    # ev-k drew 1.00 from grant 1, which has expired since; a re-rating lowers it to 0.50
    # (reversal 80, new booking 81). The call was paid by grant 1 while it was live: the new
    # booking draws 0.50 of grant 1 again (it keeps 0.50, expired), never the live grant 2
    # (the customer's live credits would pay a call paid already, for a fall in price).
    grants = [grant(1, "1", remaining="0", expires_in_days=-1), grant(2, "5")]
    plan = plan_draws(
        [entry(80, "-1.00", event="ev-k"), entry(81, "0.50", event="ev-k")],
        grants,
        {"ev-k": [(1, Decimal("1.00"))]},
        AT,
    )
    assert amounts(plan.draws) == [(80, 1, "-1.00"), (81, 1, "0.50")]
    assert plan.remaining == {1: Decimal("0.50"), 2: Decimal(5)}
    # Raised to 1.30: 1.00 from grant 1 again (all it gave back), the rise of 0.30 from
    # the live grant, as a new call's would be.
    plan = plan_draws(
        [entry(80, "-1.00", event="ev-k"), entry(81, "1.30", event="ev-k")],
        grants,
        {"ev-k": [(1, Decimal("1.00"))]},
        AT,
    )
    assert amounts(plan.draws) == [(80, 1, "-1.00"), (81, 1, "1.00"), (81, 2, "0.30")]
    assert plan.remaining == {1: Decimal("0.00"), 2: Decimal("4.70")}
    # Without a live grant, the lowered call owes nothing in money: 0.50 of grant 1 again.
    alone = [grant(1, "1", remaining="0", expires_in_days=-1)]
    plan = plan_draws(
        [entry(80, "-1.00", event="ev-k"), entry(81, "0.50", event="ev-k")],
        alone,
        {"ev-k": [(1, Decimal("1.00"))]},
        AT,
    )
    assert amounts(plan.draws) == [(80, 1, "-1.00"), (81, 1, "0.50")]


def test_a_fall_that_leaves_a_price_is_paid_by_the_credits_first() -> None:
    # A 0.50 call paid 0.25 by credits (the grant's all) and 0.25 in money falls to 0.25.
    # Given back as a re-rating books it (0.50 back, 0.25 drawn again), the credits still
    # pay the 0.25 it costs: nothing changes. Before, 0.25 came back as credit and the
    # call's 0.25 was owed in money.
    grants = [grant(1, "0.25", remaining="0")]
    priced = {("ev-f", "acme"): Decimal("0.50")}
    plan = plan_draws(
        [entry(60, "-0.25", event="ev-f")], grants, {"ev-f": [(1, Decimal("0.25"))]}, AT, priced
    )
    assert plan.draws == []
    assert plan.remaining == {1: Decimal(0)}


def test_a_fall_below_what_the_credits_paid_gives_the_difference_back() -> None:
    # A 1.25 call paid 1.25 by credits falls to 1.10: 0.15 comes back (1.25 back, 1.10
    # drawn again, from the same grant: the only live one).
    grants = [grant(1, "3", remaining="1.75", expires_in_days=10)]
    priced = {("ev-g", "acme"): Decimal("1.25")}
    plan = plan_draws(
        [entry(61, "-0.15", event="ev-g")], grants, {"ev-g": [(1, Decimal("1.25"))]}, AT, priced
    )
    assert amounts(plan.draws) == [(61, 1, "-0.15")]
    assert plan.remaining == {1: Decimal("1.90")}


def test_credits_a_fall_frees_pay_a_call_paid_in_money_whichever_comes_first() -> None:
    # Two 0.50 calls, the first paid by the 0.50 grant, the second in money; one re-pricing
    # halves both. The credits freed (0.25 of the first's) pay the second's 0.25, whether
    # its entry comes before or after the first's: before, the second stayed paid in money
    # and 0.25 of credit sat unused when its id came first.
    drawn = {"ev-credit": [(1, Decimal("0.50"))]}
    priced = {("ev-credit", "acme"): Decimal("0.50"), ("ev-money", "acme"): Decimal("0.50")}
    for credit_id, money_id in ((70, 71), (71, 70)):
        grants = [grant(1, "0.50", remaining="0")]
        falls = [
            entry(credit_id, "-0.25", event="ev-credit"),
            entry(money_id, "-0.25", event="ev-money"),
        ]
        plan = plan_draws(falls, grants, drawn, AT, priced)
        assert plan.remaining == {1: Decimal(0)}, (credit_id, money_id)
        # The credit-paid call gives back 0.25; the money-paid one draws it.
        assert sorted(amounts(plan.draws)) == sorted(
            [(credit_id, 1, "-0.25"), (money_id, 1, "0.25")]
        )


def test_credits_a_fall_frees_pay_a_rise_whichever_comes_first() -> None:
    # Two calls paid by a 1.00 grant (0.60 and 0.40); one re-pricing doubles the first
    # (+0.60) and takes the second to 0.10. Price 1.30: the credits pay 1.00 of it, 0.30 is
    # money, whichever entry comes first. Before, the rise met an empty grant when its entry
    # came first, and 0.30 of the credits the fall gave back sat unused (0.60 in money).
    drawn = {"ev-up": [(1, Decimal("0.60"))], "ev-down": [(1, Decimal("0.40"))]}
    priced = {("ev-up", "acme"): Decimal("0.60"), ("ev-down", "acme"): Decimal("0.40")}
    for up_id, down_id in ((80, 81), (81, 80)):
        grants = [grant(1, "1.00", remaining="0")]
        changes = [entry(up_id, "0.60", event="ev-up"), entry(down_id, "-0.30", event="ev-down")]
        plan = plan_draws(changes, grants, drawn, AT, priced)
        assert plan.remaining == {1: Decimal(0)}, (up_id, down_id)
        assert sorted(amounts(plan.draws)) == sorted([(up_id, 1, "0.30"), (down_id, 1, "-0.30")])
