"""One delivery attempt over HTTP: checked destination, pinned address, no redirects, no
proxies from the environment, a total deadline, and at most ``READ_CAP`` bytes read back."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import httpx

from inferx.config import Settings
from inferx.kit.time import utcnow
from inferx.webhooks import ssrf

READ_CAP = 64 * 1024
STORED_BODY = 1024
USER_AGENT = "InferX-Webhooks/1"


@dataclass(frozen=True, slots=True)
class AttemptResult:
    # success | http_error | redirect | gone | timeout | connection_error | blocked_ssrf
    outcome: str
    status_code: int | None
    body: str | None
    error: str | None
    retry_after_s: float | None
    duration_ms: float


def retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - utcnow()).total_seconds())


class Sender:
    def __init__(self, settings: Settings) -> None:
        self.policy = ssrf.Policy.of(settings)
        self.timeout_s = settings.webhook_timeout_s
        self.resolver: ssrf.Resolver = ssrf.system_resolver

    async def send(self, url: str, headers: dict[str, str], body: bytes) -> AttemptResult:
        start = time.perf_counter()

        def done(outcome: str, code: int | None = None, **extra: object) -> AttemptResult:
            return AttemptResult(
                outcome=outcome,
                status_code=code,
                body=extra.get("body"),  # type: ignore[arg-type]
                error=extra.get("error"),  # type: ignore[arg-type]
                retry_after_s=extra.get("retry_after_s"),  # type: ignore[arg-type]
                duration_ms=round((time.perf_counter() - start) * 1000, 3),
            )

        try:
            dest = await ssrf.check(url, self.policy, self.resolver)
        except ssrf.UnsafeUrl as exc:
            return done("blocked_ssrf", error=exc.detail)
        request_url = httpx.URL(url).copy_with(host=dest.ip)
        default_port = 443 if dest.scheme == "https" else 80
        host_header = dest.host if dest.port == default_port else f"{dest.host}:{dest.port}"
        if ":" in dest.host and not dest.host.startswith("["):
            host_header = f"[{dest.host}]" + ("" if dest.port == default_port else f":{dest.port}")
        send_headers = {
            **headers,
            "Host": host_header,
            "User-Agent": USER_AGENT,
            "Content-Type": "application/json",
        }
        # TLS still verifies the certificate against the name, while the socket goes to the
        # address that was checked.
        extensions = {"sni_hostname": dest.host} if dest.scheme == "https" else {}
        try:
            async with asyncio.timeout(self.timeout_s):
                async with httpx.AsyncClient(
                    trust_env=False, follow_redirects=False, timeout=self.timeout_s
                ) as client:
                    request = client.build_request(
                        "POST", request_url, headers=send_headers, content=body,
                        extensions=extensions,
                    )  # fmt: skip
                    response = await client.send(request, stream=True)
                    try:
                        data = await _read_capped(response)
                    finally:
                        await response.aclose()
        except TimeoutError:
            return done("timeout", error=f"no complete answer within {self.timeout_s:g} s")
        except httpx.HTTPError as exc:
            return done("connection_error", error=type(exc).__name__)
        code = response.status_code
        text = data[:STORED_BODY].decode("utf-8", "replace")
        wait = retry_after(response.headers.get("retry-after"))
        if 200 <= code < 300:
            return done("success", code, body=text)
        if code == 410:
            return done("gone", code, body=text)
        if 300 <= code < 400:
            return done("redirect", code, body=text, error="redirects are not followed")
        return done("http_error", code, body=text, retry_after_s=wait)


async def _read_capped(response: httpx.Response) -> bytes:
    data = bytearray()
    async for part in response.aiter_raw():
        data += part
        if len(data) >= READ_CAP:
            break
    return bytes(data[:READ_CAP])
