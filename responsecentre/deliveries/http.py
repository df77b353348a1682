"""The HTTP side shared by the webhook and the SMS gateway: one POST, one verdict.

Both channels split failures the same way. A 2xx is the peer's receipt. A 408 or 429 and
every 5xx, timeout or connection error may pass (the peer is busy, restarting or
unreachable), so they are retryable; any other 4xx is the peer saying this request will
never work (bad signature, wrong token, unknown number), so it is not, and a 3xx is not
followed (a receiver that moved is a configuration to fix, not a hop to make with a
signed body). The detail names the status or the kind of failure, never a body.
"""

from __future__ import annotations

import httpx

from responsecentre.deliveries.base import DeliveryError

RETRYABLE_4XX = frozenset({408, 429})


def client(timeout_s: float) -> httpx.AsyncClient:
    """A client of its own per channel: a receiver that hangs ties up only its own pool."""
    return httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)


def verdict(status: int) -> DeliveryError | None:
    """None for a receipt (2xx), else the error to raise."""
    if 200 <= status < 300:
        return None
    retryable = status >= 500 or status in RETRYABLE_4XX
    return DeliveryError(f"HTTP {status}", retryable=retryable)


async def post(
    http: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str], timeout_s: float
) -> httpx.Response:
    """POST `body`; a 2xx response, or a DeliveryError within `timeout_s`."""
    try:
        response = await http.post(
            url, content=body, headers={"Content-Type": "application/json", **headers}, timeout=timeout_s
        )
    except httpx.TimeoutException as exc:
        raise DeliveryError(f"timeout ({type(exc).__name__})", retryable=True) from exc
    except httpx.UnsupportedProtocol as exc:  # not http(s): a configuration to fix
        raise DeliveryError("unsupported URL scheme", retryable=False) from exc
    except httpx.TransportError as exc:  # refused, reset, DNS: the peer is not there now
        raise DeliveryError(f"connection failed ({type(exc).__name__})", retryable=True) from exc
    except httpx.InvalidURL as exc:
        raise DeliveryError("invalid URL", retryable=False) from exc
    error = verdict(response.status_code)
    if error is not None:
        raise error
    return response
