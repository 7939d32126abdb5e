"""The backend registry: one `BackendSpec` per backend, the one home of what a backend is. Torch-free.

Everything that used to list backends derives from `REGISTRY`: the runtime backends `edgekd.load`
accepts (`edgekd.runtimes.BACKENDS`), the export targets (`edgekd.exporters.TARGETS`, recipe
`export.targets`, `edgekd export --target`), which artifact kind each backend runs and what it needs
installed, the fixed rule `backend="auto"` follows, and the Core ML compute units that the exporter,
the runtime, `edgekd verify` and the CLI accept.

Adding a backend is one module (an `Exporter` subclass and/or a session opener) plus one
`register(BackendSpec(...))` line below; `tests/test_backend_registry.py` does exactly that for a
toy numpy backend. Nothing here imports an engine: modules are named as strings and imported only
when the backend is used.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

# Core ML compute units, each a different engine (CPU, GPU, Neural Engine, or Core ML's pick):
# what `--compute-units` records at export, what the Core ML session accepts, what verify measures.
COREML_COMPUTE_UNITS = ("CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE", "ALL")


@dataclass(frozen=True)
class BackendSpec:
    """What edgekd knows about one backend; every other table of backends derives from these."""

    name: str  # what users pass: edgekd.load(backend=...), --target, verify --backends
    # The artifact kind it runs (`Artifact.backend` in the manifest); None: it runs the checkpoint.
    artifact: str | None
    # "module:callable" (path, artifact, manifest, options) -> Session. The session reports what
    # its model declares (`embedded_contract`, `model_inputs`); `edgekd.load` checks both, once.
    session: str
    needs: str  # the module that must be importable to run it ...
    extra: str  # ... and the pip extra that installs it: pip install 'edgekd[extra]'
    # "module:class" of the `Exporter` that writes `artifact` files; None for runtime-only backends.
    exporter: str | None = None
    # Values of the session's `compute_units` option; each is a separate engine that verify measures.
    compute_units: tuple[str, ...] = ()
    # Place in the fixed rule of backend="auto" (lower is preferred); None: auto never picks it.
    auto_rank: int | None = None
    # sys.platform values it runs on (empty: any).
    platforms: tuple[str, ...] = ()
    # The backend that runs its artifacts where it cannot run (Core ML off macOS: the MIL evaluator).
    stand_in: str | None = None
    # auto keeps it in the rule even when `needs` is missing, so load names the extra to install
    # (ONNX Runtime: the last resort, and the one a bundle always has).
    fallback: bool = False
    label: str = ""  # how messages name it (the fixed rule's wording); default: the name

    @property
    def title(self) -> str:
        return self.label or self.name

    def runs_on(self, platform: str) -> bool:
        """Whether it runs on this OS (a `sys.platform` value); its engine may still be missing."""
        return not self.platforms or platform in self.platforms


REGISTRY: dict[str, BackendSpec] = {}


def register(spec: BackendSpec) -> BackendSpec:
    """Add a backend; ValueError if the name is taken or the spec is malformed."""
    if spec.name in REGISTRY:
        raise ValueError(f"backend {spec.name!r} is already registered")
    for ref in (spec.session, spec.exporter):
        if ref is not None and ref.count(":") != 1:
            raise ValueError(f"backend {spec.name!r}: {ref!r} is not 'module:attribute'")
    if spec.exporter is not None and spec.artifact != spec.name:
        raise ValueError(f"backend {spec.name!r} exports artifacts of kind {spec.artifact!r}; an exporting "
                         "backend's artifact kind is its own name (the manifest's Artifact.backend)")
    REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a backend added by `register` (tests that add a toy backend clean up with it)."""
    REGISTRY.pop(name, None)


def spec_of(name: str) -> BackendSpec:
    """The spec of a registered backend (KeyError for an unknown name; callers validate first)."""
    return REGISTRY[name]


class RegistryView(Mapping[str, str]):
    """A live, read-only view of REGISTRY: backend name -> one string field, for the specs where
    that field is set, in registration order. A backend registered later shows up in it."""

    def __init__(self, field: str) -> None:
        self._field = field

    def __getitem__(self, name: str) -> str:
        value = getattr(REGISTRY[name], self._field) if name in REGISTRY else None
        if value is None:
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter([n for n, s in REGISTRY.items() if getattr(s, self._field) is not None])

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"RegistryView({self._field!r}, {dict(self)!r})"


# The shipped backends, in the order users see them listed.
register(BackendSpec("onnx", "onnx", "edgekd.runtimes.onnx:OnnxSession", "onnxruntime", "onnx",
                     exporter="edgekd.exporters.onnx:OnnxExporter", auto_rank=3, fallback=True, label="ONNX Runtime"))
register(BackendSpec("openvino", "openvino", "edgekd.runtimes.openvino:OpenVinoSession", "openvino", "openvino",
                     exporter="edgekd.exporters.openvino:OpenVinoExporter", auto_rank=2, label="OpenVINO"))
register(BackendSpec("coreml", "coreml", "edgekd.runtimes.coreml:CoreMLSession", "coremltools", "coreml",
                     exporter="edgekd.exporters.coreml:CoreMLExporter", compute_units=COREML_COMPUTE_UNITS,
                     auto_rank=1, platforms=("darwin",), stand_in="coreml-reference", label="Core ML (macOS)"))
register(BackendSpec("coreml-reference", "coreml", "edgekd.runtimes.mil:open_artifact", "numpy", "coreml"))
register(BackendSpec("torch", None, "edgekd.runtimes.torch:open_reference", "torch", "train"))
