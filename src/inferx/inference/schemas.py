from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class PredictResponse(BaseModel):
    prediction: list[Any]
    probabilities: list[list[float | None]] | None
    classes: list[Any] | None
    model_id: uuid.UUID
    model_version: int
    inference_time_ms: float
    cache_hit: bool
    request_id: str | None


class PredictionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    model_id: uuid.UUID
    version: int | None
    user_id: uuid.UUID
    api_key_id: uuid.UUID | None
    status: str
    status_code: int
    latency_ms: float
    rows: int
    cache_hit: bool
    error: str | None
    request_id: str | None
    inputs: dict[str, Any] | None
    outputs: dict[str, Any] | None
    created_at: datetime


PREDICT_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["input"],
                    "properties": {
                        "input": {
                            "description": "Rows of feature values, or objects keyed by feature "
                            "name when the version has a named input_schema.",
                            "type": "array",
                            "items": {
                                "oneOf": [{"type": "array", "items": {}}, {"type": "object"}]
                            },
                        }
                    },
                },
                "examples": {
                    "rows": {"value": {"input": [[5.1, 3.5, 1.4, 0.2]]}},
                    "named": {"value": {"input": [{"sepal_length": 5.1, "sepal_width": 3.5}]}},
                },
            }
        },
    }
}
