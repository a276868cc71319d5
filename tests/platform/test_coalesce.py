"""Coalescer: calls of one loop tick handled together, each caller getting its own result."""

from __future__ import annotations

import asyncio

import pytest

from inferx.kit.coalesce import Coalescer


async def test_calls_of_one_tick_share_one_run_and_get_their_own_results():
    runs: list[list[int]] = []

    async def run(items: list[int]) -> list[int | BaseException]:
        runs.append(items)
        await asyncio.sleep(0)
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]

    calls = Coalescer(run)
    results = await asyncio.gather(*(calls(i) for i in range(6)), return_exceptions=True)
    assert runs == [[0, 1, 2, 3, 4, 5]]
    assert results[0::2] == [0, 20, 40]
    assert [str(e) for e in results[1::2]] == ["odd 1", "odd 3", "odd 5"]
    assert await calls(8) == 80 and runs[-1] == [8]  # a lone call runs alone, a tick later


async def test_batches_are_bounded_and_a_failed_run_fails_each_caller():
    sizes: list[int] = []

    async def run(items: list[int]) -> list[int]:
        sizes.append(len(items))
        if 99 in items:
            raise ConnectionError("redis went away")
        return items

    calls = Coalescer(run, max_items=4)
    assert await asyncio.gather(*(calls(i) for i in range(10))) == list(range(10))
    assert sizes == [4, 4, 2]
    results = await asyncio.gather(calls(1), calls(99), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)


async def test_a_caller_that_gives_up_does_not_break_the_others():
    release = asyncio.Event()

    async def run(items: list[str]) -> list[str]:
        await release.wait()
        return [i.upper() for i in items]

    calls = Coalescer(run)
    patient = asyncio.ensure_future(calls("a"))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(calls("b"), 0.01)
    release.set()
    assert await patient == "A"


async def test_a_run_returning_the_wrong_count_fails_its_callers():
    async def run(items: list[int]) -> list[int]:
        return items[:-1]

    calls = Coalescer(run)
    results = await asyncio.gather(calls(1), calls(2), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
