"""Fixtures of the administration tests: mass activation's environment (:mod:`tests.mass_env`)."""

from sandbox.smtp import smtp_sink  # noqa: F401 - fixture
from tests.exchange_mass_env import exch  # noqa: F401 - fixture
from tests.mass_env import graph, mass, mass_config  # noqa: F401 - fixtures
