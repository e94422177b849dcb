"""``GET /api/shows/{id}/report``: the post-show report as JSON, or CSV (``?format=csv`` / Accept).

The report is the live insight plus the whole timeline (viewers and GMV per minute), the
show's sales and every order, so a host can take it into a spreadsheet after the show.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from aiohttp import web

from ..appkeys import REDIS
from ..auth import STAFF, authenticate
from ..errors import ApiError
from ..shows import get_show
from . import alerts, insight, viewers_series

ORDER_COLUMNS = (
    "id", "sale_id", "product_id", "title", "user_id", "name", "quantity", "price", "amount",
    "currency", "status", "created_at", "paid_at",
)  # fmt: skip


async def build_report(app: web.Application, show_id: str) -> dict[str, Any]:
    """Everything the report holds, read after the order projection caught up."""
    from ..commerce import keys as ck
    from ..commerce.orders import CONSUMER, public
    from ..commerce.sales import list_sales
    from ..commerce.stats import show_stats

    await app[CONSUMER].catch_up(show_id)
    redis = app[REDIS]
    ids = await redis.zrange(ck.order_index(show_id), 0, -1)
    rows = await redis.hmget(ck.order_records(show_id), ids) if ids else []
    orders = [public(json.loads(raw)) for raw in rows if raw]
    stats = await show_stats(app, show_id)
    paid = [o for o in orders if o["status"] == "paid"]
    gmv: dict[str, int] = {}
    for order in paid:
        gmv[order["currency"]] = gmv.get(order["currency"], 0) + int(order["amount"])
    return {
        "show": await get_show(app, show_id),
        "generated_at": stats["at"],
        "insight": await insight(app, show_id),
        "totals": {
            "peak_viewers": stats["peak_viewers"],
            "chat_messages": stats["chat_messages"],
            "likes": stats["likes"],
            "product_clicks": stats["product_clicks"],
            "orders": len(orders),
            "paid_orders": len(paid),
            "gmv": gmv,
        },
        "timeline": {"viewers_per_minute": await viewers_series(app, show_id)},
        "sales": await list_sales(app, show_id),
        "orders": orders,
        "alerts": await alerts.history(app, show_id),
    }


def to_csv(report: dict[str, Any]) -> str:
    """Sections one after another, each a title row, a header row and its rows."""
    out = io.StringIO()
    w = csv.writer(out)
    ins = report["insight"]
    w.writerow(["section", "totals"])
    w.writerow(["metric", "value"])
    for name, value in report["totals"].items():
        if isinstance(value, dict):
            for currency, amount in value.items():
                w.writerow([f"{name}_{currency}", amount])
        else:
            w.writerow([name, value])
    for name in ("sessions", "mean_s", "median_s", "bounce", "bounce_rate"):
        w.writerow([f"dwell_{name}", ins["dwell"][name]])
    w.writerow([])
    w.writerow(["section", "dwell_buckets"])
    w.writerow(["bucket", "sessions"])
    for label, count in ins["dwell"]["buckets"].items():
        w.writerow([label, count])
    w.writerow([])
    w.writerow(["section", "interaction"])
    w.writerow(["kind", "users_show", "rate_show", "users_last_minute", "rate_last_minute"])
    for kind, row in ins["interaction"].items():
        w.writerow(
            [kind, row["show"], row["show_rate"], row["last_minute"], row["last_minute_rate"]]
        )
    w.writerow([])
    w.writerow(["section", "funnel"])
    columns = ("product_id", "impressions", "clicks", "reservations", "paid", "click_rate",
               "reservation_rate", "paid_rate")  # fmt: skip
    w.writerow(columns)
    for row in ins["funnel"]:
        w.writerow([row[c] for c in columns])
    w.writerow([])
    w.writerow(["section", "timeline"])
    w.writerow(["minute_ms", "viewers", *sorted(ins["gmv_per_minute"])])
    minutes = set(report["timeline"]["viewers_per_minute"])
    for points in ins["gmv_per_minute"].values():
        minutes |= set(points)
    for m in sorted(minutes, key=int):
        w.writerow(
            [m, report["timeline"]["viewers_per_minute"].get(m, 0)]
            + [ins["gmv_per_minute"][c].get(m, 0) for c in sorted(ins["gmv_per_minute"])]
        )
    w.writerow([])
    w.writerow(["section", "alerts"])
    w.writerow(["at", "alert", "state", "reason"])
    for alert in report["alerts"]:
        w.writerow([alert.get("at"), alert.get("alert"), alert.get("state"), alert.get("reason")])
    w.writerow([])
    w.writerow(["section", "orders"])
    w.writerow(ORDER_COLUMNS)
    for order in report["orders"]:
        w.writerow([order.get(c, "") for c in ORDER_COLUMNS])
    return out.getvalue()


async def handle_report(request: web.Request) -> web.Response:
    show_id = request.match_info["show_id"]
    await get_show(request.app, show_id)
    await authenticate(request, show_id, STAFF)
    fmt = request.query.get("format")
    if fmt is None:
        fmt = "csv" if "text/csv" in request.headers.get("Accept", "") else "json"
    if fmt not in ("json", "csv"):
        raise ApiError(400, "bad_field", "format must be json or csv", field="format")
    report = await build_report(request.app, show_id)
    if fmt == "csv":
        return web.Response(
            text=to_csv(report),
            content_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{show_id}-report.csv"'},
        )
    return web.json_response({"report": report})


def setup(app: web.Application) -> None:
    app.router.add_get("/api/shows/{show_id}/report", handle_report)
