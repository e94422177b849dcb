"""Media test fixtures: run forwarding tests on both per-viewer write paths."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from media import fastpath


@pytest.fixture(params=["native", "python"])
def forward_path(request: pytest.FixtureRequest) -> Iterator[str]:
    """Viewers connecting in the test use the C writer (``native``) or the Python one.

    ``native`` fails, not skips, when the extension is not built: ``./dev test`` builds it
    (``pip install -e .``), so a missing build is a broken install.
    """
    enabled = request.param == "native"
    if enabled and not fastpath.available():
        pytest.fail(f"media fast path not available: {fastpath.describe()}")
    with fastpath.selected(enabled):
        yield request.param
