"""Business invariants of a flash sale, checked on the server's own order records.

Pure functions over plain records and the sale's parameters: the CLI feeds them what
``GET /api/shows/{id}/orders`` returned, and tests feed them records built by hand that do
oversell, duplicate or break a per-user limit. Every check answers ``{ok, detail}``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Order states that no longer hold stock; anything else (reserved, paid, ...) counts as sold.
RELEASED_STATES = frozenset({"expired", "cancelled", "canceled", "failed", "released", "refunded"})


@dataclass(frozen=True)
class OrderRecord:
    """One order/reservation as the server recorded it."""

    order_id: str
    user_id: str
    key: str
    quantity: int = 1
    status: str = "reserved"
    sale_id: str = ""

    @property
    def holds_stock(self) -> bool:
        return self.status not in RELEASED_STATES


@dataclass(frozen=True)
class SaleParams:
    """What the sale offered and what the crowd legitimately asked for.

    ``eligible_demand`` is the sum over buyers of min(units the buyer tried to buy with
    distinct keys, per-user limit): the most a correct server can sell to this crowd.
    """

    quantity: int
    per_user_limit: int
    eligible_demand: int


def check(ok: bool, detail: str) -> dict[str, Any]:
    """One invariant's verdict."""
    return {"ok": bool(ok), "detail": detail}


def sale_counts(orders: Iterable[OrderRecord], params: SaleParams) -> dict[str, int]:
    """sold, reserved, paid, oversold, per_user_violations, duplicates from the order records."""
    holding = [o for o in orders if o.holds_stock]
    sold = sum(o.quantity for o in holding)
    per_user: dict[str, int] = defaultdict(int)
    for order in holding:
        per_user[order.user_id] += order.quantity
    keys = Counter((o.user_id, o.key) for o in holding)
    return {
        "sold": sold,
        "reserved": sum(o.quantity for o in holding if o.status == "reserved"),
        "paid": sum(o.quantity for o in holding if o.status == "paid"),
        "oversold": max(0, sold - params.quantity),
        "per_user_violations": sum(
            1 for units in per_user.values() if units > params.per_user_limit
        ),
        "duplicates": sum(count - 1 for count in keys.values() if count > 1),
    }


def check_sale(orders: Iterable[OrderRecord], params: SaleParams) -> dict[str, dict[str, Any]]:
    """The four flash-sale invariants: sold == min(Q, eligible demand), oversold == 0,
    per-user violations == 0, duplicates == 0."""
    orders = list(orders)
    counts = sale_counts(orders, params)
    expected = min(params.quantity, params.eligible_demand)
    return {
        "sold_equals_min_quantity_demand": check(
            counts["sold"] == expected,
            f"sold {counts['sold']}, expected min(quantity {params.quantity}, eligible demand "
            f"{params.eligible_demand}) = {expected}",
        ),
        "nothing_oversold": check(
            counts["oversold"] == 0,
            f"{counts['sold']} sold of {params.quantity} (oversold {counts['oversold']})",
        ),
        "per_user_limit": check(
            counts["per_user_violations"] == 0,
            f"{counts['per_user_violations']} users hold more than {params.per_user_limit} units",
        ),
        "no_duplicates": check(
            counts["duplicates"] == 0,
            f"{counts['duplicates']} extra orders share a (user, idempotency key)",
        ),
    }


def check_replays(first: Mapping[str, str], replays: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """A repeated idempotency key must get the first outcome back: ``first`` maps key → outcome,
    ``replays`` lists (key, outcome) of the retries."""
    mismatched = [
        (key, outcome, first.get(key)) for key, outcome in replays if first.get(key) != outcome
    ]
    total = sum(1 for _ in first)
    if mismatched:
        key, got, want = mismatched[0]
        return check(
            False,
            f"{len(mismatched)} retries got a different outcome (e.g. key {key}: {got} != {want})",
        )
    return check(True, f"every retry got its first outcome back ({total} keys)")


def check_client_agrees(client_reserved: int, server_sold: int, unknown: int) -> dict[str, Any]:
    """Buyers told "reserved" must match the server's records (requests with no answer may go either way)."""
    ok = client_reserved <= server_sold <= client_reserved + unknown
    return check(
        ok,
        f"clients saw {client_reserved} reserved (+{unknown} unanswered), server records {server_sold}",
    )


def orders_from_json(body: Any, sale_id: str | None = None) -> list[OrderRecord]:
    """Normalize ``GET /api/shows/{id}/orders`` into records (tolerates ``orders``/``items`` lists)."""
    items = body.get("orders", body.get("items", [])) if isinstance(body, dict) else body
    out = []
    for item in items or []:
        if sale_id and str(item.get("sale_id", sale_id)) != sale_id:
            continue
        out.append(
            OrderRecord(
                order_id=str(
                    item.get("id") or item.get("order_id") or item.get("reservation_id") or ""
                ),
                user_id=str(item.get("user_id") or item.get("uid") or ""),
                key=str(item.get("key") or item.get("idempotency_key") or ""),
                quantity=int(item.get("quantity") or item.get("qty") or 1),
                status=str(item.get("status") or "reserved"),
                sale_id=str(item.get("sale_id") or ""),
            )
        )
    return out
