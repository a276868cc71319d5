from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

SUPPORT = str(Path(__file__).resolve().parent / "support")
if SUPPORT not in sys.path:
    sys.path.insert(0, SUPPORT)  # the test models are imported by name, here and in workers

import inferx_testmodels  # noqa: E402

from inferx.inference.pool import InferencePool, PoolConfig  # noqa: E402
from inferx.kit.sandbox import SandboxLimits  # noqa: E402

PoolFactory = Callable[..., Any]


def pool_config(**overrides: Any) -> PoolConfig:
    settings: dict[str, Any] = {
        "workers": 2,
        "loader": inferx_testmodels.LOADER,
        "pythonpath": (SUPPORT,),
        "start_timeout_s": 30.0,
        "stop_timeout_s": 2.0,
        "limits": SandboxLimits(memory_bytes=2 << 30),
    }
    settings.update(overrides)
    return PoolConfig(**settings)


@pytest.fixture
async def make_pool() -> AsyncIterator[PoolFactory]:
    pools: list[InferencePool] = []

    async def make(**overrides: Any) -> InferencePool:
        pool = InferencePool(pool_config(**overrides))
        pools.append(pool)
        await pool.start()
        return pool

    yield make
    for pool in pools:
        await pool.stop()


@pytest.fixture
async def pool(make_pool: PoolFactory) -> InferencePool:
    return await make_pool()
