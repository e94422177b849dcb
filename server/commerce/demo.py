"""Demo content: a few products with inline SVG images (no network), one of them pinned."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from .products import create_product, pin


def _svg(color: str, label: str) -> str:
    svg = (
        "<svg xmlns='http://www.w3.org/2000/svg' width='240' height='240' viewBox='0 0 240 240'>"
        f"<rect width='240' height='240' rx='24' fill='{color}'/>"
        "<text x='120' y='135' font-family='sans-serif' font-size='28' fill='white' "
        f"text-anchor='middle'>{label}</text></svg>"
    )
    return "data:image/svg+xml;utf8," + quote(svg)


DEMO_PRODUCTS = (
    {"title": "Aero Runner sneakers", "description": "Featherweight knit runners, limited spring colourway.",
     "price": 8900, "stock": 500, "image": _svg("#e4572e", "SNEAKERS")},
    {"title": "Canvas tote bag", "description": "Heavy cotton tote with the show logo.",
     "price": 1900, "stock": 300, "image": _svg("#29335c", "TOTE")},
    {"title": "Cotton crew socks (3 pairs)", "description": "Soft, breathable, goes with the sneakers.",
     "price": 1200, "stock": 1000, "image": _svg("#669bbc", "SOCKS")},
    {"title": "Trail cap", "description": "Quick-dry cap with an adjustable strap.",
     "price": 2500, "stock": 200, "image": _svg("#3a7d44", "CAP")},
)  # fmt: skip


async def seed_products(app: web.Application, show_id: str) -> None:
    """Add the demo products and pin the sneakers."""
    created = [
        await create_product(app, show_id, {**item, "currency": "USD"}) for item in DEMO_PRODUCTS
    ]
    await pin(app, created[0]["id"])
