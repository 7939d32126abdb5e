"""Exporters: one module per backend, each an `Exporter` subclass (see `base.py`) named by its
backend's `BackendSpec.exporter` in `edgekd.backends`. Adding a target is that module plus one
`register(...)` line in `edgekd/backends.py`; `TARGETS` here is a live view of the registry.

`export_bundle` (in `bundle_writer`) turns a checkpoint into a checked bundle.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from edgekd.backends import RegistryView
from edgekd.errors import RecipeError

if TYPE_CHECKING:
    from edgekd.exporters.base import Exporter

# target name -> "module:class" of its exporter, for every registered backend that exports; the
# modules are imported only when the target is used (they need torch).
TARGETS = RegistryView("exporter")


def parse_targets(spec: str | list[str]) -> list[str]:
    """'onnx,openvino' | 'all' | ['onnx'] -> validated target names in registry order."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [s.strip().lower() for s in items if s.strip()]
    if "all" in names:
        return list(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown or not names:
        raise RecipeError(f"unsupported export target {', '.join(unknown) or repr(spec)}; "
                          f"choose from {', '.join(TARGETS)} or all, e.g. --target onnx,openvino")
    return [t for t in TARGETS if t in names]


def get_exporter(name: str) -> Exporter:
    """A fresh exporter instance for a target name."""
    if name not in TARGETS:
        parse_targets([name])
    module, cls = TARGETS[name].split(":")
    return getattr(importlib.import_module(module), cls)()
