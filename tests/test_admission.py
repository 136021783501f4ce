"""Admission: FIFO, O(1), and nothing lost to cancellation or a timeout.

The queues on their own (thousands of coroutines on asyncio and trio, hundreds of
threads), then the clients' admission layer: the limit holds, a streamed response
keeps its slot until closed, token requests never queue behind admitted requests,
and cancelling queued callers at the worst moment leaves the client whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import signal
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
from fakes import API_KEY, API_SECRET, FakeClock, token_body

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


def test_hundreds_of_threads_with_random_patience_never_exceed_the_limit_nor_lose_a_slot() -> None:
    admission = SyncAdmission(3)
    lock = threading.Lock()
    inside = [0, 0]  # now, most
    outcomes = {"admitted": 0, "timed_out": 0}
    start = threading.Barrier(200)

    def caller(seed: int) -> None:
        rng = random.Random(seed)  # noqa: S311 (a workload, not a secret)
        start.wait(TIMEOUT)  # all at once
        for _ in range(10):
            try:
                admission.acquire(rng.choice([0.0, 0.0001, 0.001, 0.01, None]))
            except RequestTimeoutError:
                with lock:
                    outcomes["timed_out"] += 1
                continue
            with lock:
                inside[0] += 1
                inside[1] = max(inside)
                outcomes["admitted"] += 1
            threading.Event().wait(rng.random() * 0.001)  # work while admitted
            with lock:
                inside[0] -= 1
            admission.release()

    workers = [threading.Thread(target=caller, args=(seed,)) for seed in range(200)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(TIMEOUT)
    assert 1 <= inside[1] <= 3
    assert outcomes["admitted"] + outcomes["timed_out"] == 2_000
    assert (admission.in_use, admission.waiting) == (0, 0)


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs POSIX signals")
def test_a_thread_interrupted_while_queued_loses_no_slot() -> None:
    # Ctrl-C lands in a thread waiting for a slot (signals reach the main thread):
    # the slot released next must go back to the pool, not to the thread that left.
    admission = SyncAdmission(1)
    admission.acquire(None)
    main = threading.get_ident()

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    def interrupt_once_queued() -> None:
        while admission.waiting < 1:
            threading.Event().wait(0.0005)
        signal.pthread_kill(main, signal.SIGUSR1)

    previous = signal.signal(signal.SIGUSR1, interrupt)
    interrupter = threading.Thread(target=interrupt_once_queued)
    try:
        interrupter.start()
        with pytest.raises(KeyboardInterrupt):
            admission.acquire(TIMEOUT)
    finally:
        interrupter.join(TIMEOUT)
        signal.signal(signal.SIGUSR1, previous)
    admission.release()
    assert (admission.in_use, admission.waiting) == (0, 0)
    admission.acquire(0.01)  # the slot is free, not handed to the thread that left


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


# ------------------------------------------- the queue's wait and the deadline


def _recording_api(timeouts: list[dict[str, float]], *, streamed: str) -> Any:
    handler, _ = gated_api(streamed=streamed)

    def record(request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/auth/token"):
            timeouts.append(request.extensions["timeout"])
        return handler(request)

    return record


def _clocked_client(
    clock: FakeClock, timeouts: list[dict[str, float]], twin: type[Any] = AsyncPinkCloudSyncClient
) -> Any:
    """A client of `twin` with one slot, on `clock`, recording its API calls' timeouts."""
    streamed = "sync" if twin is PinkCloudSyncClient else "async"
    return twin(
        API_KEY,
        API_SECRET,
        transport=httpx.MockTransport(_recording_api(timeouts, streamed=streamed)),
        max_concurrency=1,
        _clock=clock,
    )


# 9 of the call's 10 s pass in the queue: it leaves with 1 s for every phase, not 10.
QUEUED_FOR, TIMEOUT_SET = 9.0, 10.0
WHAT_IS_LEFT = dict.fromkeys(("connect", "read", "write", "pool"), TIMEOUT_SET - QUEUED_FOR)


async def test_the_wait_for_admission_counts_against_the_deadline() -> None:
    clock = FakeClock()
    timeouts: list[dict[str, float]] = []
    client: AsyncPinkCloudSyncClient = _clocked_client(clock, timeouts)
    with anyio.fail_after(TIMEOUT):
        async with client:
            await client.get_token()  # the queued call needs no token (no other clamp)
            holder = await _open_stream(client)
            async with anyio.create_task_group() as group:
                group.start_soon(
                    functools.partial(client.get, "sync/sessions", timeout=TIMEOUT_SET)
                )
                await anyio.wait_all_tasks_blocked()
                clock.advance(QUEUED_FOR)
                await holder.aclose()
    assert timeouts[-1] == WHAT_IS_LEFT


async def test_a_call_whose_time_ran_out_in_the_queue_is_not_sent() -> None:
    clock = FakeClock()
    timeouts: list[dict[str, float]] = []
    client: AsyncPinkCloudSyncClient = _clocked_client(clock, timeouts)
    outcome: list[BaseException] = []

    async def call() -> None:
        with pytest.raises(RequestTimeoutError, match="admission") as raised:
            await client.get("sync/sessions", timeout=TIMEOUT_SET)
        outcome.append(raised.value)

    with anyio.fail_after(TIMEOUT):
        async with client:
            await client.get_token()
            holder = await _open_stream(client)
            async with anyio.create_task_group() as group:
                group.start_soon(call)
                await anyio.wait_all_tasks_blocked()
                clock.advance(TIMEOUT_SET)  # granted just as its time is up
                await holder.aclose()
            assert client._admission is not None
            assert (client._admission.in_use, client._admission.waiting) == (0, 0)
    assert len(outcome) == 1
    assert len(timeouts) == 1  # the holder's only


def test_the_sync_twins_wait_for_admission_counts_against_the_deadline() -> None:
    clock = FakeClock()
    timeouts: list[dict[str, float]] = []
    with _clocked_client(clock, timeouts, PinkCloudSyncClient) as client:
        client.get_token()
        admission = client._admission
        assert admission is not None
        holder = client.send(client.build_request("GET", "sync/sessions"), stream=True)
        queued = threading.Thread(
            target=client.get, args=("sync/sessions",), kwargs={"timeout": TIMEOUT_SET}
        )
        queued.start()
        while admission.waiting < 1:
            threading.Event().wait(0.0005)
        clock.advance(QUEUED_FOR)
        holder.close()
        queued.join(TIMEOUT)
    assert timeouts[-1] == WHAT_IS_LEFT


# ------------------------------------------------------ a second event loop


def _streamed_client(limit: int) -> AsyncPinkCloudSyncClient:
    handler, _ = gated_api(streamed="async")
    return AsyncPinkCloudSyncClient(
        API_KEY, API_SECRET, transport=httpx.MockTransport(handler), max_concurrency=limit
    )


async def _open_stream(client: AsyncPinkCloudSyncClient) -> httpx.Response:
    return await client.send(client.build_request("GET", "sync/sessions"), stream=True)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_slot_left_held_on_a_finished_event_loop_is_free_on_the_next(backend: str) -> None:
    # A streamed response never closed on the first loop can never release its
    # slot: the next loop starts with every slot free, even when the first loop
    # never had to queue.
    client = _streamed_client(1)

    async def leave_a_stream_open() -> None:
        await _open_stream(client)

    async def call() -> int:
        with anyio.fail_after(TIMEOUT):
            return (await client.get("sync/sessions", timeout=1.0)).status_code

    anyio.run(leave_a_stream_open, backend=backend)
    assert anyio.run(call, backend=backend) == 200
    assert client._admission is not None
    assert (client._admission.in_use, client._admission.waiting) == (0, 0)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_reset_for_a_new_event_loop_keeps_the_count_of_its_own_requests(
    backend: str,
) -> None:
    # First loop: two streams fill both slots, one is closed, one is left open as
    # the loop ends. Second loop: a stream takes the free slot at once, the next one
    # finds the old loop's slot held. The count must hold both of this loop's
    # streams (no third call admitted), ignore the old stream closed late, and come
    # back to zero, not below it (a negative count admits more than the limit).
    client = _streamed_client(2)
    admission = client._admission
    assert admission is not None

    async def first_loop() -> httpx.Response:
        kept, closed = await _open_stream(client), await _open_stream(client)
        await closed.aclose()
        return kept

    async def second_loop(old: httpx.Response) -> None:
        with anyio.fail_after(TIMEOUT):
            early, late = await _open_stream(client), await _open_stream(client)
            await old.aclose()  # its slot went with its loop
            assert admission.in_use == 2
            with pytest.raises(RequestTimeoutError):
                await client.get("sync/sessions", timeout=0.01)
            await early.aclose()
            await late.aclose()
            assert (admission.in_use, admission.waiting) == (0, 0)

    old = anyio.run(first_loop, backend=backend)
    anyio.run(second_loop, old, backend=backend)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_calls_queued_on_an_abandoned_event_loop_leave_the_next_loops_count_alone() -> None:
    # A loop closed with calls still queued (no asyncio.run to cancel them): the next
    # loop resets the queue. When the old calls' coroutines are finally closed (by
    # the garbage collector, here at once), they must not leave a queue they are no
    # longer in, nor free a slot they no longer hold.
    client = _streamed_client(1)
    admission = client._admission
    assert admission is not None

    async def fill_and_queue() -> list[asyncio.Task[httpx.Response]]:
        await _open_stream(client)  # never closed
        calls = [asyncio.ensure_future(client.get("sync/sessions")) for _ in range(2)]
        await anyio.wait_all_tasks_blocked()
        assert admission.waiting == 2
        return calls

    abandoned = asyncio.new_event_loop()
    old_calls = abandoned.run_until_complete(fill_and_queue())
    abandoned.close()

    async def next_loop() -> None:
        held = await _open_stream(client)
        queued = asyncio.ensure_future(client.get("sync/sessions"))
        await anyio.wait_all_tasks_blocked()
        assert admission.waiting == 1
        for call in old_calls:
            with contextlib.suppress(BaseException):
                call.get_coro().close()  # what the collector does to a pending task
        assert (admission.in_use, admission.waiting) == (1, 1)
        await held.aclose()
        assert (await queued).status_code == 200
        assert (admission.in_use, admission.waiting) == (0, 0)

    asyncio.run(asyncio.wait_for(next_loop(), TIMEOUT))
