"""``python -m loadtest`` / ``liveshop-loadtest``."""

from __future__ import annotations

import sys

from .cli import run_cli


def main(argv: list[str] | None = None) -> None:
    """Console entry point: exit status 0 when every invariant and SLO holds, 1 otherwise, 2 on setup errors."""
    sys.exit(run_cli(argv))


if __name__ == "__main__":
    main()
