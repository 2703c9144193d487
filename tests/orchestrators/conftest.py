"""The HTTP handlers read the service settings (the callback policy): every test here runs
with the production defaults unless its own fixtures say otherwise (``service_env``)."""

from collections.abc import Iterator

import pytest

from orchestrators import runtime

PRODUCTION_DEFAULTS_CLEARED = (
    "CALLBACK_URL",
    "CALLBACK_ALLOW_HTTP",
    "CALLBACK_ALLOW_PRIVATE_NETWORKS",
    "CALLBACK_ALLOWED_HOSTS",
)


@pytest.fixture(autouse=True)
def handler_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Storage named (never contacted by the handlers), callbacks at the production
    defaults: https only, public addresses only."""
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_URL", "https://handlers.blob.core.windows.net")
    for key in PRODUCTION_DEFAULTS_CLEARED:
        monkeypatch.delenv(key, raising=False)
    runtime.reset_for_tests()
    yield
    runtime.reset_for_tests()
