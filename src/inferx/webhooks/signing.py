"""Standard Webhooks signing, and webhook secrets encrypted at rest.

A secret is ``whsec_`` + base64 of 32 random bytes. A message is signed as
``v1,<base64 HMAC-SHA256(key, "{msg_id}.{timestamp}.{body}")>``; during a rotation both the
new and the previous secret sign (space-separated), so receivers can switch at their pace.
Stored secrets are Fernet tokens under a key derived (HKDF-SHA256) from the server's signing
key: a database dump alone does not reveal them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "whsec_"


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(PREFIX))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(secrets_: list[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, msg_id, timestamp, body) for s in secrets_),
    }


class SecretBox:
    def __init__(self, signing_key: str) -> None:
        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=b"inferx", info=b"webhook-secrets/v1"
        ).derive(signing_key.encode())
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("webhook secret cannot be decrypted (signing key changed?)") from exc
