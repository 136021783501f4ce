"""Admission: FIFO, O(1), and nothing lost to cancellation or a timeout.

The queues on their own (thousands of coroutines on asyncio and trio, hundreds of
threads), then the clients' admission layer: the limit holds, a streamed response
keeps its slot until closed, token requests never queue behind admitted requests,
and cancelling queued callers at the worst moment leaves the client whole.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable

import anyio
import anyio.lowlevel
import httpx
import pytest
from fakes import API_KEY, API_SECRET, token_body

from pinkcloudsync_async import (
    AsyncPinkCloudSyncClient,
    PinkCloudSyncClient,
    RequestTimeoutError,
)
from pinkcloudsync_async._admission import AsyncAdmission, SyncAdmission

TIMEOUT = 10.0
pytestmark = pytest.mark.anyio


# ------------------------------------------------------------ the async queue


@pytest.mark.parametrize("limit", [1, 3])
async def test_thousands_of_coroutines_are_admitted_in_arrival_order(limit: int) -> None:
    admission = AsyncAdmission(limit)
    for _ in range(limit):
        await admission.acquire(None)  # full: every caller below queues
    admitted: list[int] = []
    inside = 0
    most_inside = 0

    async def caller(i: int) -> None:
        nonlocal inside, most_inside
        await admission.acquire(None)
        admitted.append(i)
        inside += 1
        most_inside = max(most_inside, inside)
        await anyio.lowlevel.checkpoint()
        inside -= 1
        admission.release()

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as group:
            for i in range(5_000):
                group.start_soon(caller, i)
                await anyio.lowlevel.checkpoint()  # queued in start order
            await anyio.wait_all_tasks_blocked()
            assert admission.waiting == 5_000
            for _ in range(limit):
                admission.release()
    # Slots are granted in arrival order; callers granted in the same step may run
    # in any order (trio shuffles them), so compare by batches of `limit`.
    batches = [sorted(admitted[i : i + limit]) for i in range(0, 5_000, limit)]
    assert [i for batch in batches for i in batch] == list(range(5_000))
    assert most_inside == limit
    assert (admission.in_use, admission.waiting) == (0, 0)


async def test_cancelling_queued_callers_loses_no_slot() -> None:
    admission = AsyncAdmission(2)
    await admission.acquire(None)
    await admission.acquire(None)  # full: everyone else queues
    survivors: list[int] = []

    async def caller(i: int) -> None:
        await admission.acquire(None)
        survivors.append(i)
        admission.release()

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as outer:
            doomed = anyio.CancelScope()

            async def doomed_callers() -> None:
                with doomed:
                    async with anyio.create_task_group() as inner:
                        for i in range(1_000):
                            inner.start_soon(caller, i)

            outer.start_soon(doomed_callers)
            for i in range(1_000, 1_010):
                outer.start_soon(caller, i)
            await anyio.wait_all_tasks_blocked()
            assert admission.waiting == 1_010
            doomed.cancel()  # 1,000 queued callers give up at once
            await anyio.wait_all_tasks_blocked()
            admission.release()
            admission.release()
    assert sorted(survivors) == list(range(1_000, 1_010))
    assert (admission.in_use, admission.waiting) == (0, 0)


async def test_a_caller_cancelled_as_it_is_handed_a_slot_passes_it_on() -> None:
    admission = AsyncAdmission(1)
    await admission.acquire(None)
    order: list[str] = []

    async def first(scope: anyio.CancelScope) -> None:
        with scope:
            await admission.acquire(None)
            try:  # trio may grant it before the cancellation lands: then it releases
                order.append("first")
                await anyio.lowlevel.checkpoint()
            finally:
                admission.release()
        assert scope.cancelled_caught

    async def second() -> None:
        await admission.acquire(None)
        order.append("second")
        admission.release()

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as group:
            scope = anyio.CancelScope()
            group.start_soon(first, scope)
            group.start_soon(second)
            await anyio.wait_all_tasks_blocked()
            admission.release()  # hands the slot to `first`...
            scope.cancel()  # ...which gives up before it runs again
    assert order[-1] == "second"
    assert (admission.in_use, admission.waiting) == (0, 0)


async def test_a_wait_that_runs_out_raises_the_typed_timeout_and_leaves_no_trace() -> None:
    admission = AsyncAdmission(1)
    await admission.acquire(None)
    with anyio.fail_after(TIMEOUT), pytest.raises(RequestTimeoutError, match="max_concurrency"):
        await admission.acquire(0.01)
    admission.release()
    assert (admission.in_use, admission.waiting) == (0, 0)
    await admission.acquire(0.01)  # the slot is free again at once


# ------------------------------------------------------------ the sync queue


def test_threads_are_admitted_in_arrival_order_and_never_more_than_the_limit() -> None:
    admission = SyncAdmission(1)
    admission.acquire(None)
    admitted: list[int] = []
    lock = threading.Lock()
    inside = [0, 0]  # now, most

    def caller(i: int) -> None:
        admission.acquire(TIMEOUT)
        with lock:
            admitted.append(i)
            inside[0] += 1
            inside[1] = max(inside)
        with lock:
            inside[0] -= 1
        admission.release()

    workers = []
    for i in range(200):
        worker = threading.Thread(target=caller, args=(i,))
        worker.start()
        workers.append(worker)
        while admission.waiting < i + 1:  # queued before the next one starts
            threading.Event().wait(0.0005)
    admission.release()
    for worker in workers:
        worker.join(TIMEOUT)
    assert admitted == list(range(200))
    assert inside[1] == 1
    assert (admission.in_use, admission.waiting) == (0, 0)


def test_a_thread_that_runs_out_of_patience_loses_nothing() -> None:
    admission = SyncAdmission(1)
    admission.acquire(None)
    with pytest.raises(RequestTimeoutError):
        admission.acquire(0.01)
    admission.release()
    assert (admission.in_use, admission.waiting) == (0, 0)
    admission.acquire(0.01)


# --------------------------------------------------- the clients' admission layer


def gated_api(
    gate: threading.Event | None = None, *, streamed: str = ""
) -> tuple[Callable[..., httpx.Response], list[str]]:
    """A MockTransport handler; API calls block on `gate` (in a worker thread).

    `streamed` ("sync" or "async"): answer with a body the client has not read yet,
    as a socket does (a plain body is handed over already read).
    """
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.url.path.endswith("/auth/token"):
            return httpx.Response(200, json=token_body())
        if gate is not None:
            gate.wait(TIMEOUT)
        if streamed == "async":
            return httpx.Response(200, content=_async_chunks())
        if streamed == "sync":
            return httpx.Response(200, content=iter([b'{"sessions": ', b"[]}"]))
        return httpx.Response(200, json={"sessions": []})

    return handler, seen


async def _async_chunks() -> AsyncIterator[bytes]:
    yield b'{"sessions": '
    yield b"[]}"


class _ThreadedMock(httpx.AsyncBaseTransport):
    """MockTransport whose handler runs in a worker thread, so it may block."""

    def __init__(self, handler: Callable[[httpx.Request], httpx.Response]) -> None:
        self._mock = httpx.MockTransport(handler)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        response = await anyio.to_thread.run_sync(
            self._mock.handle_request, request, abandon_on_cancel=True
        )
        await response.aread()
        return response


async def test_the_limit_holds_and_the_rest_queue() -> None:
    gate = threading.Event()
    handler, seen = gated_api(gate)
    client = AsyncPinkCloudSyncClient(
        API_KEY, API_SECRET, transport=_ThreadedMock(handler), max_concurrency=2
    )
    with anyio.fail_after(TIMEOUT):
        async with client:
            async with anyio.create_task_group() as group:
                for _ in range(5):
                    group.start_soon(client.get, "sync/sessions")
                await anyio.wait_all_tasks_blocked()
                # Two calls admitted (in the transport), three queued before the auth.
                assert client._admission is not None
                assert (client._admission.in_use, client._admission.waiting) == (2, 3)
                gate.set()
            assert (client._admission.in_use, client._admission.waiting) == (0, 0)
    assert seen.count("/v1/auth/token") == 1
    assert seen.count("/v1/sync/sessions") == 5


async def test_a_streamed_response_keeps_its_slot_until_closed() -> None:
    handler, seen = gated_api(streamed="async")
    client = AsyncPinkCloudSyncClient(
        API_KEY, API_SECRET, transport=httpx.MockTransport(handler), max_concurrency=1
    )
    with anyio.fail_after(TIMEOUT):
        async with client:
            async with client.stream("GET", "sync/sessions") as response:
                assert client._admission is not None
                assert client._admission.in_use == 1
                with pytest.raises(RequestTimeoutError):
                    await client.get("sync/sessions", timeout=0.05)  # no slot free
                assert (await response.aread()) == b'{"sessions": []}'
            assert client._admission.in_use == 0
            assert (await client.get("sync/sessions")).status_code == 200
    assert seen.count("/v1/auth/token") == 1


def test_the_sync_twin_keeps_a_streamed_responses_slot_until_closed() -> None:
    handler, seen = gated_api(streamed="sync")
    with PinkCloudSyncClient(
        API_KEY, API_SECRET, transport=httpx.MockTransport(handler), max_concurrency=1
    ) as client:
        with client.stream("GET", "sync/sessions") as response:
            assert client._admission is not None
            assert client._admission.in_use == 1
            with pytest.raises(RequestTimeoutError):
                client.get("sync/sessions", timeout=0.05)  # no slot free
            assert response.read() == b'{"sessions": []}'
        assert client._admission.in_use == 0
        assert client.get("sync/sessions").status_code == 200
    assert seen.count("/v1/auth/token") == 1


async def test_a_token_request_never_queues_behind_admitted_requests() -> None:
    # One slot, held by a streamed response: a cold call still gets its token
    # (below admission) and then waits for the slot, not the other way round.
    handler, seen = gated_api(streamed="async")
    client = AsyncPinkCloudSyncClient(
        API_KEY, API_SECRET, transport=httpx.MockTransport(handler), max_concurrency=1
    )
    with anyio.fail_after(TIMEOUT):
        async with client:
            token = await client.get_token()  # not an admitted request
            assert token is not None
            async with client.stream("GET", "sync/sessions"):
                assert client._admission is not None
                assert client._admission.in_use == 1
                assert (await client.get_token()) is token
    assert seen == ["/v1/auth/token", "/v1/sync/sessions"]


async def test_cancelling_a_crowd_at_every_stage_leaves_the_client_whole() -> None:
    gate = threading.Event()
    handler, seen = gated_api(gate)
    client = AsyncPinkCloudSyncClient(
        API_KEY, API_SECRET, transport=_ThreadedMock(handler), max_concurrency=10
    )
    with anyio.fail_after(TIMEOUT):
        async with client:
            await client.get_token()
            async with anyio.create_task_group() as group:
                for _ in range(2_000):
                    group.start_soon(client.get, "sync/sessions")
                await anyio.wait_all_tasks_blocked()
                assert client._admission is not None
                assert client._admission.in_use == 10
                assert client._admission.waiting == 1_990
                group.cancel_scope.cancel()  # admitted, in flight, queued: all of them
            gate.set()
            assert client._admission.waiting == 0
            assert client._admission.in_use == 0
            assert (await client.get("sync/sessions")).status_code == 200
    assert seen.count("/v1/auth/token") == 1
