"""Signed tokens: round trip, tampering, expiry, show binding, roles."""

from __future__ import annotations

import time

import pytest

from server import auth
from server.errors import ApiError

SECRET = "s3cret"


def test_token_round_trip_carries_identity() -> None:
    token = auth.issue(SECRET, show_id="s1", role="moderator", name="Mia", user_id="m_1")
    claims = auth.verify(SECRET, token, "s1")
    assert (claims.user_id, claims.name, claims.role, claims.show_id) == (
        "m_1",
        "Mia",
        "moderator",
        "s1",
    )
    assert claims.is_staff
    assert claims.exp > time.time()


@pytest.mark.parametrize(
    "mangle",
    [lambda t: t[:-2] + "xx", lambda t: "x" + t, lambda t: t.replace(".", ""), lambda t: ""],
)
def test_tampered_tokens_are_rejected(mangle) -> None:
    token = auth.issue(SECRET, show_id="s1", role="viewer", name="V")
    with pytest.raises(ApiError) as err:
        auth.verify(SECRET, mangle(token), "s1")
    assert err.value.status == 401 and err.value.code == "unauthorized"


def test_token_signed_with_another_secret_is_rejected() -> None:
    token = auth.issue("other", show_id="s1", role="host", name="H")
    with pytest.raises(ApiError) as err:
        auth.verify(SECRET, token, "s1")
    assert err.value.code == "unauthorized"


def test_expired_token_is_rejected() -> None:
    token = auth.issue(SECRET, show_id="s1", role="viewer", name="V", ttl_s=-2 * auth.LEEWAY_S)
    with pytest.raises(ApiError) as err:
        auth.verify(SECRET, token, "s1")
    assert err.value.code == "token_expired"


def test_token_for_another_show_is_forbidden() -> None:
    token = auth.issue(SECRET, show_id="s1", role="host", name="H")
    with pytest.raises(ApiError) as err:
        auth.verify(SECRET, token, "s2")
    assert err.value.status == 403


def test_role_check() -> None:
    claims = auth.verify(SECRET, auth.issue(SECRET, show_id="s1", role="viewer", name="V"))
    claims.require(auth.ANY_ROLE)
    with pytest.raises(ApiError) as err:
        claims.require(auth.STAFF)
    assert err.value.code == "forbidden"


def test_unknown_role_cannot_be_issued() -> None:
    with pytest.raises(ValueError):
        auth.issue(SECRET, show_id="s1", role="admin", name="A")  # type: ignore[arg-type]


def test_a_remembered_token_still_expires_and_stays_bound() -> None:
    keys = auth.Keyring(SECRET)
    token = auth.issue(SECRET, show_id="s1", role="viewer", name="V")
    assert auth.verify(keys, token, "s1").name == "V"
    assert token in keys.verified  # the second check is a lookup
    with pytest.raises(ApiError) as err:
        auth.verify(keys, token, "s2")
    assert err.value.status == 403
    keys.verified[token] = {**keys.verified[token], "exp": int(time.time()) - 2 * auth.LEEWAY_S}
    with pytest.raises(ApiError) as err:
        auth.verify(keys, token, "s1")
    assert err.value.code == "token_expired"
    with pytest.raises(ApiError):  # another keyring (another secret) never sees the memory
        auth.verify(auth.Keyring("another-secret"), token, "s1")
