"""Access tokens: short-lived HS256 JWTs with a pinned algorithm and every claim required."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from inferx.kit.time import utcnow

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["exp", "iat", "nbf", "sub", "jti", "iss", "aud", "typ", "fam"]
LEEWAY_S = 30


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    jti: str
    family_id: uuid.UUID
    expires_at: datetime


class InvalidToken(Exception):
    pass


class TokenSigner:
    def __init__(self, key: str, *, issuer: str, audience: str, ttl_s: int) -> None:
        self._key = key
        self._issuer = issuer
        self._audience = audience
        self.ttl_s = ttl_s

    def issue(self, user_id: uuid.UUID, family_id: uuid.UUID) -> str:
        now = utcnow()
        claims = {
            "sub": str(user_id),
            "iss": self._issuer,
            "aud": self._audience,
            "iat": now,
            "nbf": now,
            "exp": now + timedelta(seconds=self.ttl_s),
            "jti": uuid.uuid4().hex,
            "typ": "access",
            "fam": str(family_id),
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def verify(self, token: str) -> AccessClaims:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                leeway=LEEWAY_S,
                options={"require": REQUIRED_CLAIMS},
            )
            if claims["typ"] != "access":
                raise InvalidToken("not an access token")
            return AccessClaims(
                user_id=uuid.UUID(claims["sub"]),
                jti=str(claims["jti"]),
                family_id=uuid.UUID(claims["fam"]),
                expires_at=datetime.fromtimestamp(claims["exp"], tz=UTC),
            )
        except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
            raise InvalidToken(str(exc)) from exc
