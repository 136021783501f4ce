"""`RedisTokenStore`: the fleet's token in Redis, encrypted at rest; a thin I/O shell.

It runs the steps a `FleetFlight` yields against Redis, through redis-py's asyncio
client on asyncio and its sync client from threads (on trio, the sync client in a
worker thread: redis-py's async client is asyncio-only). Every call has a short
timeout and no redis-py retries; a failure opens the circuit breaker, and every
step is answered `DOWN` (so clients make their own token requests) until a probe
after the cooldown succeeds. One WARNING per outage, one INFO when it ends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import httpx
from anyio.lowlevel import EventLoopToken, current_token

from .._constants import LOGGER_NAME
from .._exceptions import ConfigurationError
from .._token_source import TokenFetcher, TokenSource
from ._cipher import PlaintextCodec, TokenCipher, parse_keys
from ._fleet import DEFAULT_KEY_PREFIX, RELEASE_SCRIPT, WRITE_SCRIPT, Breaker, fleet_keys
from ._flight import DOWN, Read, Release, Snapshot, Step, TryLock, Write
from ._source import FleetTokenSource

if TYPE_CHECKING:
    import redis
    import redis.asyncio

__all__ = ["RedisTokenStore"]

logger = logging.getLogger(LOGGER_NAME)

DEFAULT_TIMEOUT = 0.25
DEFAULT_FAILURE_TTL = 2.0
DEFAULT_BREAKER_COOLDOWN = 5.0
_INSTALL_HINT = 'The Redis token store needs: pip install "pinkcloudsync-async[redis]"'


def _on_asyncio() -> bool:
    try:
        import sniffio
    except ImportError:  # anyio without sniffio: only asyncio can be running
        return True
    return bool(sniffio.current_async_library() == "asyncio")


def _safe_url(url: str) -> str:
    """The URL without its user info (a password must not reach a repr or a log)."""
    try:
        return str(httpx.URL(url).copy_with(userinfo=b""))
    except (httpx.InvalidURL, TypeError, ValueError):
        return "<unparsable URL>"


class RedisTokenStore:
    """Shares one token across processes through Redis; see `from_url`.

    Built here from redis-py clients you own (a `redis.Redis` for the sync client, a
    `redis.asyncio.Redis` for the async one; Sentinel's `master_for(...)` and
    Cluster clients work too): configure them with a short `socket_timeout` and
    `retry=Retry(NoBackoff(), 0)`. The store never closes clients it was given.

    `encryption_key`: the current key's URL-safe base64 text (or several,
    comma-separated, current first); `previous_encryption_keys`: more keys, for
    reading only (rotation). Without a key, `allow_unencrypted=True` must be said.
    `timeout` (seconds) bounds every Redis call; `failure_ttl` (seconds) how long a
    failed token request (no `Retry-After`) is shared; `breaker_cooldown` (seconds)
    how long Redis is skipped after it failed. Raises ConfigurationError.
    """

    def __init__(
        self,
        *,
        client: redis.Redis | None = None,
        async_client: redis.asyncio.Redis | None = None,
        encryption_key: str | bytes | None = None,
        previous_encryption_keys: Sequence[str | bytes] = (),
        allow_unencrypted: bool = False,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        timeout: float = DEFAULT_TIMEOUT,
        failure_ttl: float = DEFAULT_FAILURE_TTL,
        breaker_cooldown: float = DEFAULT_BREAKER_COOLDOWN,
        _url: str | None = None,
    ) -> None:
        if client is None and async_client is None and _url is None:
            raise ConfigurationError("RedisTokenStore needs a client (or use from_url).")
        for name, value in (
            ("timeout", timeout),
            ("failure_ttl", failure_ttl),
            ("breaker_cooldown", breaker_cooldown),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigurationError(f"{name} must be a positive number of seconds.")
        if not isinstance(key_prefix, str) or not key_prefix or "{" in key_prefix:
            raise ConfigurationError("key_prefix must be a non-empty string without '{'.")
        self.codec = _codec(encryption_key, previous_encryption_keys, allow_unencrypted)
        self.key_prefix = key_prefix
        self.timeout = float(timeout)
        self.failure_ttl = float(failure_ttl)
        self._url = _url
        self._client = client
        self._async_client = async_client
        self._async_loop: EventLoopToken | None = None
        self._scripts: dict[int, tuple[Any, Any, Any]] = {}
        self._breaker = Breaker(cooldown=float(breaker_cooldown))
        self._lock = threading.Lock()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        encryption_key: str | bytes | None = None,
        previous_encryption_keys: Sequence[str | bytes] = (),
        allow_unencrypted: bool = False,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        timeout: float = DEFAULT_TIMEOUT,
        failure_ttl: float = DEFAULT_FAILURE_TTL,
        breaker_cooldown: float = DEFAULT_BREAKER_COOLDOWN,
    ) -> RedisTokenStore:
        """A store on the Redis at `url` (`redis://`, `rediss://` or `unix://`).

        Its clients are built here, with `timeout` for connecting and for every
        reply, and no retries; the store closes them (`close` / `aclose`).
        """
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigurationError(
                "The Redis URL must start with redis://, rediss:// or unix:// "
                "(set it with PINKCLOUDSYNC_REDIS_URL)."
            )
        try:
            import redis  # noqa: F401 - only to fail early with the install hint
        except ImportError:
            raise ConfigurationError(_INSTALL_HINT) from None
        return cls(
            encryption_key=encryption_key,
            previous_encryption_keys=previous_encryption_keys,
            allow_unencrypted=allow_unencrypted,
            key_prefix=key_prefix,
            timeout=timeout,
            failure_ttl=failure_ttl,
            breaker_cooldown=breaker_cooldown,
            _url=url,
        )

    def __repr__(self) -> str:
        where = _safe_url(self._url) if self._url is not None else "given clients"
        return f"RedisTokenStore({where!r}, codec={self.codec!r})"

    # --------------------------------------------------------------- TokenStore

    def bind(
        self,
        source: TokenSource,
        *,
        base_url: str,
        api_key: str,
        lock_ttl: float,
        clock: Callable[[], float],
    ) -> TokenFetcher:
        """A token source for one client that shares its tokens through this store."""
        return FleetTokenSource(
            source,
            store=self,
            keys=fleet_keys(self.key_prefix, base_url, api_key),
            lock_ttl=lock_ttl,
            failure_window=self.failure_ttl,
            clock=clock,
        )

    def close(self) -> None:
        """Close the clients this store built (not those it was given)."""
        if self._url is None:
            return
        client, self._client = self._client, None
        if client is not None:
            client.close()
        # An asyncio client can only be closed on its loop (`aclose`); dropped here.
        self._async_client = None

    async def aclose(self) -> None:
        """Close the clients this store built (not those it was given)."""
        if self._url is None:
            return
        async_client, self._async_client = self._async_client, None
        if async_client is not None and self._async_loop == current_token():
            with anyio.CancelScope(shield=True), anyio.move_on_after(self.timeout):
                await async_client.aclose()
        self.close()

    def __enter__(self) -> RedisTokenStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> RedisTokenStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------- steps

    def execute(self, step: Step) -> Any:
        """Run a Redis step from a thread; `DOWN` when Redis is unavailable."""
        if not self._allow():
            return DOWN
        try:
            result = self._run_sync(step)
        except Exception as exc:
            return self._failed(exc)
        self._succeeded()
        return result

    async def aexecute(self, step: Step) -> Any:
        """Run a Redis step from an event loop; `DOWN` when Redis is unavailable."""
        if not self._allow():
            return DOWN
        try:
            if _on_asyncio() and (self._url is not None or self._async_client is not None):
                # redis-py's own timeouts bound each socket operation; this bounds
                # the step (a script may take two round trips).
                with anyio.fail_after(self.timeout * 4):
                    result = await self._run_async(step)
            else:
                result = await anyio.to_thread.run_sync(self._run_sync, step)
        except Exception as exc:
            return self._failed(exc)
        self._succeeded()
        return result

    def _allow(self) -> bool:
        with self._lock:
            return self._breaker.allow(time.monotonic())

    def _failed(self, exc: Exception) -> Any:
        with self._lock:
            started = self._breaker.failure(time.monotonic())
        if started:
            logger.warning(
                "The Redis token store is unavailable (%s: %s): each process makes its own "
                "token requests until it answers again (next try in %.0fs)",
                type(exc).__name__,
                exc,
                self._breaker.cooldown,
            )
        return DOWN

    def _succeeded(self) -> None:
        with self._lock:
            ended = self._breaker.success()
        if ended:
            logger.info("The Redis token store answers again: the fleet shares its token")

    def _sync(self) -> redis.Redis:
        with self._lock:
            if self._client is None and self._url is None:
                raise ConfigurationError("This RedisTokenStore was given no sync client.")
            if self._client is None:
                import redis
                from redis.backoff import NoBackoff
                from redis.retry import Retry

                assert self._url is not None
                self._client = redis.Redis.from_url(
                    self._url,
                    socket_timeout=self.timeout,
                    socket_connect_timeout=self.timeout,
                    retry=Retry(NoBackoff(), 0),
                )
            return self._client

    def _async(self) -> redis.asyncio.Redis:
        loop = current_token()
        if self._url is not None and (self._async_client is None or self._async_loop != loop):
            # A connection belongs to the event loop that opened it: a new loop gets
            # its own client; the old one's loop is gone, its sockets go to the GC.
            import redis.asyncio
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            self._async_client = redis.asyncio.Redis.from_url(
                self._url,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                retry=Retry(NoBackoff(), 0),
            )
            self._async_loop = loop
        assert self._async_client is not None, "a store given no asyncio client"
        return self._async_client

    def _scripts_for(self, client: Any) -> tuple[Any, Any]:
        cached = self._scripts.get(id(client))
        if cached is None or cached[0] is not client:
            cached = (
                client,
                client.register_script(WRITE_SCRIPT),
                client.register_script(RELEASE_SCRIPT),
            )
            # Keep only the current clients' scripts: a client replaced for a new
            # event loop must not be kept alive, nor its id reused to find its scripts.
            current = (self._client, self._async_client)
            kept = {key: value for key, value in self._scripts.items() if value[0] in current}
            self._scripts = {**kept, id(client): cached}
        return cached[1], cached[2]

    def _run_sync(self, step: Step) -> Any:
        client = self._sync()
        if isinstance(step, Read):
            pipe = client.pipeline(transaction=False)
            _queue_read(pipe, step)
            return _snapshot(pipe.execute())
        if isinstance(step, TryLock):
            return bool(client.set(step.key, step.fence, nx=True, px=step.ttl_ms))
        write, release = self._scripts_for(client)
        if isinstance(step, Write):
            return write(keys=_write_keys(step), args=[step.fence, step.value, step.ttl_ms]) == 1
        assert isinstance(step, Release)
        return release(keys=[step.key], args=[step.value]) == 1

    async def _run_async(self, step: Step) -> Any:
        client = self._async()
        if isinstance(step, Read):
            pipe = client.pipeline(transaction=False)
            _queue_read(pipe, step)
            return _snapshot(await pipe.execute())
        if isinstance(step, TryLock):
            return bool(await client.set(step.key, step.fence, nx=True, px=step.ttl_ms))
        write, release = self._scripts_for(client)
        if isinstance(step, Write):
            keys = _write_keys(step)
            return await write(keys=keys, args=[step.fence, step.value, step.ttl_ms]) == 1
        assert isinstance(step, Release)
        return await release(keys=[step.key], args=[step.value]) == 1


def _queue_read(pipe: Any, step: Read) -> None:
    keys = step.keys
    pipe.get(keys.token)
    pipe.pttl(keys.token)
    pipe.get(keys.failure)
    pipe.pttl(keys.failure)
    pipe.pttl(keys.lock)


def _snapshot(replies: list[Any]) -> Snapshot:
    token, token_ms, failure, failure_ms, lock_ms = replies
    return Snapshot(token, int(token_ms), failure, int(failure_ms), int(lock_ms))


def _write_keys(step: Write) -> list[str]:
    return [step.lock, step.key] + ([step.clear] if step.clear else [])


def _codec(
    encryption_key: str | bytes | None,
    previous: Sequence[str | bytes],
    allow_unencrypted: bool,
) -> TokenCipher | PlaintextCodec:
    if encryption_key is None or (isinstance(encryption_key, (str, bytes)) and not encryption_key):
        if previous:
            raise ConfigurationError("previous_encryption_keys given without an encryption_key.")
        if allow_unencrypted:
            return PlaintextCodec()
        raise ConfigurationError(
            "A Redis token store needs an encryption key: pass encryption_key= or set "
            "PINKCLOUDSYNC_TOKEN_ENCRYPTION_KEY to the URL-safe base64 text of 32 random "
            "bytes (base64.urlsafe_b64encode(os.urandom(32))); or explicitly allow "
            "unencrypted storage (allow_unencrypted=True)."
        )
    if isinstance(previous, (str, bytes)):
        previous = [previous]
    keys = parse_keys(encryption_key) + [key for item in previous for key in parse_keys(item)]
    try:
        return TokenCipher(keys)
    except ImportError:
        raise ConfigurationError(_INSTALL_HINT) from None
