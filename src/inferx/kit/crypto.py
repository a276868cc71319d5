"""Random tokens and their hashes: what is stored is never what is handed out."""

from __future__ import annotations

import hashlib
import hmac
import secrets

API_KEY_PREFIX = "mlp_"
REFRESH_TOKEN_PREFIX = "rt_"


def new_token(prefix: str, nbytes: int = 32) -> str:
    return prefix + secrets.token_urlsafe(nbytes)


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
