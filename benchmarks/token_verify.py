"""What a token check costs per request: JWT (PyJWT) first sight, the remembered repeat, the old format.

    .venv/bin/python benchmarks/token_verify.py --rounds 10000

Every authenticated request (every buy) verifies its token. Tokens became standard JWTs (issue
14); this prints microseconds per verification for a token seen the first time (full HS256
check by PyJWT), a token seen before (the keyring remembers verified payloads and re-checks
only the times and the revocation list), and — as the baseline — the hand-rolled
``base64(json).HMAC`` format the server used before.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server import auth  # noqa: E402

SECRET = "benchmark-secret-0123456789abcdef0123456789"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def old_issue(secret: str) -> str:
    claims = {"user_id": "u1", "name": "B", "role": "viewer", "show_id": "s", "exp": 2**40}
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return (
        payload + "." + _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest())
    )


def old_verify(secret: str, token: str) -> dict:
    payload, signature = token.split(".")
    expected = _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(signature, expected):
        raise ValueError
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def per_call_us(fn, rounds: int) -> float:
    started = time.perf_counter()
    for i in range(rounds):
        fn(i)
    return (time.perf_counter() - started) / rounds * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10000)
    rounds = parser.parse_args().rounds
    tokens = [auth.issue(SECRET, show_id="s", role="viewer", name="B", user_id=f"u{i}")
              for i in range(rounds)]  # fmt: skip
    fresh = auth.Keyring(SECRET)
    first = per_call_us(lambda i: auth.verify(fresh, tokens[i], "s"), rounds)
    repeat = per_call_us(lambda i: auth.verify(fresh, tokens[i], "s", lambda c: False), rounds)
    old_token = old_issue(SECRET)
    old = per_call_us(lambda i: old_verify(SECRET, old_token), rounds)
    result = {"rounds": rounds, "jwt_first_us": round(first, 2), "jwt_repeat_us": round(repeat, 2),
              "old_hmac_us": round(old, 2)}  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
