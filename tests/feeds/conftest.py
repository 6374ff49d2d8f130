"""The feed tests reuse the in-process app of the API tests."""

from tests.api.conftest import api  # noqa: F401  (the fixture)
