"""pinkcloudsync_async: the asyncio-first client for the PinkCloudSync API.

async with AsyncPinkCloudSyncClient() as client:   # key and secret from the environment
    sessions = await client.list_sessions()
"""

from __future__ import annotations

from ._async_client import AsyncPinkCloudSyncClient
from ._auth import PinkCloudSyncAuth
from ._exceptions import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    CredentialsError,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    PinkCloudSyncError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    raise_for_api_error,
)
from ._models import (
    AccessToken,
    ErrorResponse,
    SessionList,
    SyncSession,
    TokenClaims,
    TokenResponse,
)
from ._retry_policy import RetryPolicy
from ._sync_client import PinkCloudSyncClient

__version__ = "0.1.0"

__all__ = [
    "APIConnectionError",
    "APIError",
    "AccessToken",
    "AsyncPinkCloudSyncClient",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "CredentialsError",
    "ErrorResponse",
    "InvalidResponseError",
    "NotFoundError",
    "PermissionDeniedError",
    "PinkCloudSyncAuth",
    "PinkCloudSyncClient",
    "PinkCloudSyncError",
    "RateLimitError",
    "RequestTimeoutError",
    "RetryPolicy",
    "ServerError",
    "SessionList",
    "SyncSession",
    "TokenClaims",
    "TokenResponse",
    "raise_for_api_error",
]
