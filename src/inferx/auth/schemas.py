from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from inferx.kit.schemas import Schema
from inferx.users.schemas import Email, Password


class RegisterBody(Schema):
    email: Email
    password: Password

    model_config = {
        "json_schema_extra": {
            "examples": [{"email": "ada@example.com", "password": "correct horse battery"}]
        }
    }


class LoginBody(Schema):
    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1024)

    model_config = {
        "json_schema_extra": {
            "examples": [{"email": "ada@example.com", "password": "correct horse battery"}]
        }
    }


class RefreshBody(Schema):
    refresh_token: str = Field(min_length=1, max_length=512)


class PasswordChangeBody(Schema):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: Password


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
