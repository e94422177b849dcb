"""``python -m server.protocol [docs/protocol.md]``: regenerate the protocol reference."""

import sys
from pathlib import Path

from .docs import write_docs

write_docs(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/protocol.md"))
