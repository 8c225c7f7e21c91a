"""The package's version, spelt once: `pyproject.toml` reads it (`[tool.setuptools.dynamic]`),
and `bloodcell.__version__`, the command line, the server and every saved model's record take
it from here. The bottom layer: it imports nothing."""

__version__ = "0.1.0"
