from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request, Response, status
from pydantic import ValidationError

from inferx.auth import service
from inferx.auth.dependencies import CurrentPrincipal, CurrentUser
from inferx.auth.schemas import LoginBody, PasswordChangeBody, RefreshBody, RegisterBody, TokenPair
from inferx.context import Ctx, Session
from inferx.errors import InferxError, InvalidInput
from inferx.kit.http import API_PREFIX, ClientIP
from inferx.users.schemas import UserRead

router = APIRouter(prefix=f"{API_PREFIX}/auth", tags=["auth"])

LOGIN_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": LoginBody.model_json_schema()},
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["username", "password"],
                    "properties": {"username": {"type": "string"}, "password": {"type": "string"}},
                }
            },
        },
    }
}


class UnsupportedMediaType(InferxError):
    status, title = 415, "Unsupported media type"


async def _login_body(request: Request) -> LoginBody:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if content_type == "application/json":
            data = json.loads(await request.body())
            if not isinstance(data, dict):
                raise InvalidInput("The body must be a JSON object.")
            return LoginBody.model_validate(data)
        if content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.form(max_files=0, max_fields=10)
            fields = {k: v for k, v in form.items() if k in ("username", "password")}
            return LoginBody(
                email=str(fields.get("username", "")), password=str(fields.get("password", ""))
            )
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"Malformed JSON: {exc.msg} at position {exc.pos}.") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"{where}: {first['msg']}") from exc
    raise UnsupportedMediaType("Send JSON {email, password} or an OAuth2 password form.")


@router.post("/register", status_code=status.HTTP_201_CREATED, response_model=UserRead)
async def register(body: RegisterBody, ctx: Ctx, session: Session, ip: ClientIP) -> UserRead:
    """Create an account."""
    user = await service.register(ctx, session, body.email, body.password, ip)
    return UserRead.model_validate(user)


@router.post("/login", response_model=TokenPair, openapi_extra=LOGIN_BODY_DOC)
async def login(request: Request, ctx: Ctx, session: Session, ip: ClientIP) -> TokenPair:
    """Exchange email and password for an access token and a refresh token."""
    body = await _login_body(request)
    return await service.login(ctx, session, body.email, body.password, ip)


@router.post("/refresh", response_model=TokenPair)
async def refresh(body: RefreshBody, ctx: Ctx, session: Session, ip: ClientIP) -> TokenPair:
    """Spend a refresh token for a new pair (the old one stops working)."""
    return await service.refresh(ctx, session, body.refresh_token, ip)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(principal: CurrentPrincipal, ctx: Ctx, session: Session, ip: ClientIP) -> Response:
    """End this session: its access token and refresh family stop working."""
    await service.logout(ctx, session, principal, ip)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me", response_model=UserRead)
async def me(user: CurrentUser) -> UserRead:
    """The calling user."""
    return UserRead.model_validate(user)


@router.post("/password", status_code=status.HTTP_204_NO_CONTENT)
async def change_password(
    body: PasswordChangeBody, principal: CurrentPrincipal, ctx: Ctx, session: Session, ip: ClientIP
) -> Response:
    """Change the password; every other session of the user is signed out."""
    await service.change_password(
        ctx, session, principal, body.current_password, body.new_password, ip
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
