"""A first run (issue 17): the package metadata builds without setuptools deprecation banners,
and ``python -m server --help`` shows every default."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

from setuptools.config.pyprojecttoml import apply_configuration
from setuptools.dist import Distribution

ROOT = Path(__file__).resolve().parents[2]


def test_pyproject_builds_without_deprecation_warnings() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dist = apply_configuration(Distribution(), ROOT / "pyproject.toml")
    banners = [str(w.message).splitlines()[0] for w in caught if "Deprecat" in w.category.__name__]
    assert banners == []
    assert dist.metadata.license_expression == "MIT"
    assert any(r.startswith("plotly") for r in dist.extras_require["loadtest"])


def test_server_help_shows_defaults() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "server", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    for expected in (
        "HTTP/WebSocket port (default: 8080; env LIVESHOP_PORT)",
        "fan-out batching window in ms (default: 50;",
        "create a demo show",
        "(default: off; env LIVESHOP_DEMO)",
        "keep the demo show as the last run left it (default: off;",
    ):
        assert expected in text, expected
