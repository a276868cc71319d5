from __future__ import annotations

import os
import sys

import pytest

HERE = os.path.dirname(__file__)
if HERE not in sys.path:
    sys.path.insert(0, HERE)  # jobs_testkit, shared with tests/webhooks

from jobs_testkit import FAST_JOBS  # noqa: E402


@pytest.fixture
async def jobs_api(make_api, make_settings):
    return await make_api(make_settings(**FAST_JOBS))
