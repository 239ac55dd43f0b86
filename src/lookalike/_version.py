"""The package version, in one place (``lookalike.__version__``, weights metadata, run directories)."""

__version__ = "0.1.0"
