"""The data a loaded ML Program is made of: tensor specs, operations, the program. Plain dataclasses
with no behaviour beyond naming, so the parser (program.py) and the evaluator (evaluate.py) both
import them and neither imports the other's module for its types."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# MIL DataType enum -> (numpy storage dtype, MIL name, bits). Sub-byte types unpack into int8/uint8.
DTYPES: dict[int, tuple[Any, str, int]] = {
    1: (np.bool_, "bool", 8), 2: (np.str_, "string", 0),
    10: (np.float16, "fp16", 16), 11: (np.float32, "fp32", 32), 12: (np.float64, "fp64", 64),
    21: (np.int8, "int8", 8), 22: (np.int16, "int16", 16), 23: (np.int32, "int32", 32),
    24: (np.int64, "int64", 64), 25: (np.int8, "int4", 4),
    31: (np.uint8, "uint8", 8), 32: (np.uint16, "uint16", 16), 33: (np.uint32, "uint32", 32),
    34: (np.uint64, "uint64", 64), 35: (np.uint8, "uint4", 4), 36: (np.uint8, "uint2", 2),
    37: (np.uint8, "uint1", 1), 38: (np.uint8, "uint6", 6), 39: (np.uint8, "uint3", 3),
}


@dataclass
class TensorSpec:
    """A named tensor of the program: MIL dtype code and shape (None for a dimension not fixed)."""

    name: str
    dtype: int
    shape: tuple[int | None, ...]

    @property
    def np_dtype(self) -> Any:
        return DTYPES[self.dtype][0]

    @property
    def dtype_name(self) -> str:
        return DTYPES[self.dtype][1]


@dataclass
class Operation:
    """One non-constant MIL operation, ready to evaluate."""

    type: str
    # parameter name -> bindings; each binding is ("var", name) or ("value", decoded value)
    inputs: dict[str, list[tuple[str, Any]]]
    outputs: list[TensorSpec]
    location: str


@dataclass
class Program:
    """A loaded ML Program: one function's block, its constants folded to numpy at load time."""

    path: Path
    function: str
    opset: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    operations: list[Operation]
    consts: dict[str, np.ndarray]
    # input name -> allowed shapes: a list of tuples (fixed or enumerated), or [(lower, upper), ...] ranges
    input_shapes: dict[str, dict[str, Any]] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    spec_version: int = 0

    @property
    def op_types(self) -> dict[str, int]:
        """How many operations of each type the program runs (constants excluded)."""
        counts: dict[str, int] = {}
        for op in self.operations:
            counts[op.type] = counts.get(op.type, 0) + 1
        return counts
