"""Every ORM table, imported here so ``Base.metadata`` is complete for Alembic."""

from inferx.tables.api_keys import ApiKey
from inferx.tables.audit import AuditEvent
from inferx.tables.auth import RefreshToken
from inferx.tables.base import Base
from inferx.tables.jobs import Job, JobChunk
from inferx.tables.predictions import LatencyBucket, Prediction, PredictionRollup
from inferx.tables.registry import Model, ModelShare, ModelVersion
from inferx.tables.users import User
from inferx.tables.webhooks import Webhook, WebhookAttempt, WebhookDelivery

__all__ = [
    "ApiKey",
    "AuditEvent",
    "Base",
    "Job",
    "JobChunk",
    "LatencyBucket",
    "Model",
    "ModelShare",
    "ModelVersion",
    "Prediction",
    "PredictionRollup",
    "RefreshToken",
    "User",
    "Webhook",
    "WebhookAttempt",
    "WebhookDelivery",
]
