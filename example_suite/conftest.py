import pytest


@pytest.fixture
def anyio_backend() -> str:
    # anyio would otherwise run each async test once per installed backend; pytest-laj's
    # async API runs on asyncio.
    return "asyncio"
