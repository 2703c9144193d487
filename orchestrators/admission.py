"""What a validated request must pass before it may start, checked at the edge (HTTP and
batch alike) so that a request that cannot succeed is a 400 now, not a failure later."""

from __future__ import annotations

from generation.adapters.url_safety import check_callback_url_syntax
from generation.errors import InvalidRequestError, UnsafeCallbackUrl
from generation.request import GenerationRequest
from orchestrators import runtime


def refusal(request: GenerationRequest) -> InvalidRequestError | None:
    """Why ``request`` may not start (an error with a field-error list), or None."""
    return callback_error(request)


def callback_error(request: GenerationRequest) -> InvalidRequestError | None:
    """The 400 for a callback URL the policy refuses without DNS (scheme, credentials,
    host allowlist, literal addresses in blocked ranges, cloud metadata), or None. The
    full check, with DNS, runs again before every delivery attempt."""
    settings = runtime.settings()
    url = request.callback_url or settings.callback_url
    if url is None:
        return None
    try:
        check_callback_url_syntax(url, settings.callback_policy())
    except UnsafeCallbackUrl as error:
        field = "callback_url" if request.callback_url else "CALLBACK_URL"
        message = f"unsafe callback URL: {error}"
        return InvalidRequestError(
            message, [{"field": field, "message": message, "type": "unsafe_callback_url"}]
        )
    return None
