"""Read a saved Core ML ML Program (`.mlpackage`) into plain numpy data: no Core ML, no torch.

The spec is the `Model.mlmodel` protobuf (`spec.mlProgram`: functions -> block -> operations). The
protobuf classes are coremltools' own generated `*_pb2` modules, loaded under a private package name
so that `coremltools/__init__.py` (which imports torch) never runs; when coremltools is already
imported, its `coremltools.proto` modules are used directly. Weights live in
`Data/com.apple.CoreML/weights/weight.bin` in MIL's blob storage format (version 2): a 64-byte header
(`uint32 count, uint32 version`, reserved), then per blob a 64-byte metadata record
(`uint32 sentinel=0xDEADBEEF, uint32 dtype, uint64 size_in_bytes, uint64 data_offset,
uint64 padding_bits`, reserved) that a `BlobFileValue.offset` points at. The blob is decoded with the
tensor type the spec declares (coremltools' `_BlobStorageReader` agrees with this reader; a test
checks it).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import struct
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.errors import MissingDependency, ModelError
from edgekd.runtimes.mil.evaluate import run_operation
from edgekd.runtimes.mil.ir import DTYPES, Operation, Program, TensorSpec

_PROTO_ALIAS = "_edgekd_coreml_proto"
_BLOB_SENTINEL = 0xDEADBEEF


def proto_module(name: str) -> types.ModuleType:
    """coremltools' generated protobuf module `name` (e.g. "Model_pb2") without importing coremltools."""
    if "coremltools.proto" in sys.modules:
        return importlib.import_module(f"coremltools.proto.{name}")
    if _PROTO_ALIAS not in sys.modules:
        spec = importlib.util.find_spec("coremltools")
        if spec is None or spec.origin is None:
            raise MissingDependency("coremltools", "coreml", "Reading a Core ML .mlpackage")
        pkg = types.ModuleType(_PROTO_ALIAS)
        pkg.__path__ = [str(Path(spec.origin).parent / "proto")]
        sys.modules[_PROTO_ALIAS] = pkg
    return importlib.import_module(f"{_PROTO_ALIAS}.{name}")


def spec_path(mlpackage: Path) -> Path:
    """The `model.mlmodel` inside an `.mlpackage` (via its Manifest.json), or a bare `.mlmodel` file.
    Weight files named `@model_path/weights/...` live in `weights/` beside it."""
    mlpackage = Path(mlpackage)
    if not mlpackage.exists():
        raise ModelError(f"Core ML model not found: {mlpackage}; export one with: edgekd export MODEL --target coreml")
    path = mlpackage
    if mlpackage.is_dir():
        path = mlpackage / "Data" / "com.apple.CoreML" / "model.mlmodel"
        manifest = mlpackage / "Manifest.json"
        if manifest.is_file():
            info = json.loads(manifest.read_text(encoding="utf-8"))
            root = info.get("rootModelIdentifier")
            if root in info.get("itemInfoEntries", {}):
                path = mlpackage / "Data" / info["itemInfoEntries"][root]["path"]
    if not path.is_file():
        raise ModelError(f"{mlpackage} is not a Core ML model package (no {path} inside); "
                         f"export it again with: edgekd export MODEL --target coreml")
    return path


def read_spec(mlpackage: Path) -> Any:
    """The `Model` protobuf of an `.mlpackage` directory (or of a bare `.mlmodel` file)."""
    model = proto_module("Model_pb2").Model()
    model.ParseFromString(spec_path(mlpackage).read_bytes())
    return model


class BlobReader:
    """Reads tensors out of MIL blob storage files (`weight.bin`), each file read once."""

    def __init__(self, weights_dir: Path) -> None:
        self.weights_dir = Path(weights_dir)
        self._files: dict[str, bytes] = {}

    def read(self, file_name: str, offset: int, spec: TensorSpec) -> np.ndarray:
        """Decode the blob whose metadata record starts at `offset`, as the tensor type `spec`."""
        data = self._file(file_name)
        sentinel, _, size, data_offset = struct.unpack_from("<IIQQ", data, offset)
        if sentinel != _BLOB_SENTINEL:
            raise ModelError(f"weight blob for {spec.name} at offset {offset} of {file_name} is corrupt "
                             f"(sentinel {sentinel:#x}); re-export the Core ML model")
        raw = data[data_offset:data_offset + size]
        count = int(np.prod([d or 0 for d in spec.shape])) if spec.shape else 1
        return decode_bytes(raw, spec.dtype, count).reshape(spec.shape)

    def _file(self, file_name: str) -> bytes:
        if file_name not in self._files:
            path = self.weights_dir / file_name.replace("@model_path/weights/", "")
            if not path.is_file():
                raise ModelError(f"weight file {path} is missing from the .mlpackage; re-export the model")
            self._files[file_name] = path.read_bytes()
        return self._files[file_name]


def decode_bytes(raw: bytes, dtype: int, count: int) -> np.ndarray:
    """Raw little-endian bytes -> a flat array of `count` elements of MIL dtype `dtype` (sub-byte
    types are packed LSB first, as the MIL constexpr op reference documents)."""
    np_dtype, name, bits = DTYPES[dtype]
    if bits >= 8:
        return np.frombuffer(raw, dtype=np_dtype, count=count).copy()
    packed = np.frombuffer(raw, dtype=np.uint8)
    bitarr = np.unpackbits(packed, bitorder="little")[: count * bits].reshape(count, bits)
    values = (bitarr.astype(np.uint8) << np.arange(bits, dtype=np.uint8)).sum(axis=1).astype(np.uint8)
    if name == "int4":  # two's complement
        return np.where(values >= 8, values.astype(np.int16) - 16, values).astype(np.int8)
    return values


def tensor_spec(name: str, value_type: Any) -> TensorSpec:
    """A TensorSpec from a MIL `ValueType` (tensor types only)."""
    kind = value_type.WhichOneof("type")
    if kind == "stateType":
        value_type = value_type.stateType.wrappedType
        kind = value_type.WhichOneof("type")
    if kind != "tensorType":
        return TensorSpec(name, 0, ())
    tt = value_type.tensorType
    dims = tuple(d.constant.size if d.WhichOneof("dimension") == "constant" else None for d in tt.dimensions)
    return TensorSpec(name, tt.dataType, dims)


def decode_value(value: Any, spec: TensorSpec, blobs: BlobReader) -> Any:
    """A MIL `Value` (immediate or blob file) -> numpy array / str / list, as `spec` declares."""
    if value.WhichOneof("value") == "blobFileValue":
        return blobs.read(value.blobFileValue.fileName, value.blobFileValue.offset, spec)
    imm = value.immediateValue
    kind = imm.WhichOneof("value")
    if kind in ("list", "tuple"):
        seq = imm.list.values if kind == "list" else imm.tuple.values
        return [decode_value(v, tensor_spec("", v.type), blobs) for v in seq]
    if kind != "tensor":
        return None  # dictionaries appear only in program attributes, never as op inputs
    tv = imm.tensor
    field_name = tv.WhichOneof("value")
    if field_name == "bytes":
        count = int(np.prod(spec.shape)) if spec.shape else 1
        arr = decode_bytes(tv.bytes.values, spec.dtype, count)
    elif field_name == "strings":
        strings = list(tv.strings.values)
        return strings[0] if not spec.shape and len(strings) == 1 else np.array(strings)
    elif field_name is None:
        arr = np.zeros(0, dtype=spec.np_dtype)
    else:
        arr = np.asarray(list(getattr(tv, field_name).values)).astype(spec.np_dtype)
    return arr.reshape(spec.shape) if None not in spec.shape else arr


def load_program(mlpackage: str | Path, function: str | None = None) -> Program:
    """Load an `.mlpackage` ML Program: spec, weights, constants (constexpr ops folded to dense
    arrays once, here) and the operations left to evaluate. Raises `ModelError` for a model that is
    not an ML Program or that uses an op the reference does not implement (naming op and location)."""
    path = Path(mlpackage)
    spec = read_spec(path)
    if spec.WhichOneof("Type") != "mlProgram":
        raise ModelError(f"{path} is a Core ML '{spec.WhichOneof('Type')}' model, not an ML Program; the "
                         f"reference evaluates ML Programs only: convert with convert_to='mlprogram'")
    prog = spec.mlProgram
    name = function or spec.description.defaultFunctionName or "main"
    if name not in prog.functions:
        raise ModelError(f"{path} has no function {name!r} (it has: {', '.join(prog.functions)}); "
                         f"pass one of those")
    fn = prog.functions[name]
    block = fn.block_specializations[fn.opset]
    blobs = BlobReader(spec_path(path).parent / "weights")
    consts: dict[str, np.ndarray] = {}
    operations: list[Operation] = []
    for index, op in enumerate(block.operations):
        location = f"{path.name}:{name}/{fn.opset} op #{index} ({op.outputs[0].name if op.outputs else '?'})"
        _load_operation(op, location, blobs, consts, operations)
    outputs = [_var_spec(block, out, fn) for out in block.outputs]
    return Program(
        path=path, function=name, opset=fn.opset,
        inputs=[tensor_spec(i.name, i.type) for i in fn.inputs], outputs=outputs,
        operations=operations, consts=consts, input_shapes=_input_shapes(spec.description),
        metadata=dict(spec.description.metadata.userDefined), spec_version=spec.specificationVersion,
    )


def _load_operation(op: Any, location: str, blobs: BlobReader, consts: dict[str, np.ndarray],
                    operations: list[Operation]) -> None:
    from edgekd.runtimes.mil.ops import OPS

    outputs = [tensor_spec(o.name, o.type) for o in op.outputs]
    if op.type == "const":
        value = decode_value(op.attributes["val"], outputs[0], blobs)
        # fp16 constants are held as (exact) float32: the compute precision, see evaluate.py
        consts[outputs[0].name] = value.astype(np.float32) if getattr(value, "dtype", None) == np.float16 else value
        return
    if op.type not in OPS:
        raise ModelError(f"Core ML op '{op.type}' at {location} is not implemented by the MIL reference "
                         f"evaluator; add it to edgekd/runtimes/mil/ops (one function + one registry line)")
    if op.blocks:
        raise ModelError(f"Core ML op '{op.type}' at {location} has nested blocks (control flow), which the "
                         f"MIL reference evaluator does not run; export without control flow")
    inputs: dict[str, list[tuple[str, Any]]] = {}
    for param, arg in op.inputs.items():
        bindings = []
        for b in arg.arguments:
            if b.WhichOneof("binding") == "name":
                bindings.append(("var", b.name))
            else:
                bindings.append(("value", decode_value(b.value, tensor_spec("", b.value.type), blobs)))
        inputs[param] = bindings
    for param, value in op.attributes.items():
        # constexpr ops keep their (constant) parameters as attributes, not inputs
        if param != "name" and param not in inputs:
            inputs[param] = [("value", decode_value(value, tensor_spec(param, value.type), blobs))]
    operation = Operation(op.type, inputs, outputs, location)
    if op.type.startswith("constexpr_"):
        # constexpr ops only take constants: fold them once at load time, as Core ML does.
        for spec, value in zip(outputs, run_operation(operation, consts), strict=True):
            consts[spec.name] = value
        return
    operations.append(operation)


def _var_spec(block: Any, name: str, fn: Any) -> TensorSpec:
    for op in block.operations:
        for out in op.outputs:
            if out.name == name:
                return tensor_spec(name, out.type)
    for inp in fn.inputs:
        if inp.name == name:
            return tensor_spec(name, inp.type)
    raise ModelError(f"program output {name!r} is produced by no operation; the model is malformed")


def _input_shapes(description: Any) -> dict[str, dict[str, Any]]:
    """Allowed input shapes from the model description: {"fixed": [shape]}, {"enumerated": [...]},
    or {"range": [(lower, upper or None), ...]}."""
    shapes: dict[str, dict[str, Any]] = {}
    for feature in description.input:
        if feature.type.WhichOneof("Type") != "multiArrayType":
            continue
        mat = feature.type.multiArrayType
        flex = mat.WhichOneof("ShapeFlexibility")
        if flex == "enumeratedShapes":
            shapes[feature.name] = {"enumerated": [tuple(s.shape) for s in mat.enumeratedShapes.shapes]}
        elif flex == "shapeRange":
            shapes[feature.name] = {"range": [(r.lowerBound, None if r.upperBound < 0 else r.upperBound)
                                              for r in mat.shapeRange.sizeRanges]}
        else:
            shapes[feature.name] = {"fixed": [tuple(mat.shape)]}
    return shapes
