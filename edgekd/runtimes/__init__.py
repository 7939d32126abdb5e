"""Torch-free inference over a bundle: one tokenizer, one label map, one backend per module.

The backends are registered in `edgekd.backends` (one `BackendSpec` each); `BACKENDS` here is a live
view of that registry: backend name -> its session opener ("module:callable"). An opener takes
(path, artifact, manifest, options) and returns a `Session` (see `base.py`) reporting the contract hash
and inputs its model declares; `edgekd.load` checks both with `base.check_session`, for every backend.
Adding a backend is one module and one `register(...)` line in `edgekd/backends.py`.
"""

from __future__ import annotations

from edgekd.backends import RegistryView

BACKENDS = RegistryView("session")
