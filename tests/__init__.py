"""The test suite, as a regular package: `from tests.conftest import ...` must find this folder
even when a wheel installs its own top-level `tests` package (torchstain 1.4.1 does), which
would otherwise win over a folder without `__init__.py`."""
