"""The few typed errors edgekd raises. Each message says what failed, the value seen and the fix.

The CLI turns any `EdgekdError` into one line on stderr and a non-zero exit (a traceback only with
`--debug`).
"""

from __future__ import annotations


class EdgekdError(Exception):
    """Base class: a user-facing failure whose message names the fix."""

    exit_code = 2


class DataError(EdgekdError):
    """A dataset spec, file, column or label set is unusable."""


class ModelError(EdgekdError):
    """A model reference cannot be resolved or loaded, or a student spec is invalid."""


class RecipeError(EdgekdError):
    """A recipe file or a CLI flag has an unknown key or a bad value."""


class BundleError(EdgekdError):
    """A bundle is missing, incomplete, tampered with, or does not match its contract."""


class ExportError(EdgekdError):
    """An export target failed, or its artifact failed the post-export check."""


class GateError(EdgekdError):
    """A verification gate (parity, accuracy) failed."""

    exit_code = 1


class MissingDependency(EdgekdError):
    """An optional dependency is not installed; the message names the extra."""

    def __init__(self, module: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the Python package '{module}', which is not installed: "
            f"pip install 'edgekd[{extra}]'"
        )
        self.module = module
        self.extra = extra


def require(module: str, extra: str, purpose: str):
    """Import an optional dependency or raise `MissingDependency` naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(module, extra, purpose) from exc
