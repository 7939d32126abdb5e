"""The device fingerprint every report carries: where the numbers were measured.

Linux reads /proc/cpuinfo and /proc/meminfo; macOS asks sysctl. The `device_id` slug
(`linux-x86_64-amd-epyc-1a2b3c4d`) names the report file, so the same machine always writes the
same file and different machines never collide.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

# ISA features that matter to int8/fp16 kernels: name in the report -> flag names that imply it.
ISA_FLAGS: dict[str, tuple[str, ...]] = {
    "avx2": ("avx2",),
    "avx512": ("avx512f",),
    "avx512_vnni": ("avx512_vnni", "avx512vnni"),
    "avx_vnni": ("avx_vnni", "avxvnni"),
    "avx512_bf16": ("avx512_bf16",),
    "amx": ("amx_tile", "amx_int8", "amx_bf16"),
    "neon": ("neon", "asimd", "advsimd"),
    "arm_dotprod": ("asimddp", "dotprod", "feat_dotprod"),
    "arm_i8mm": ("i8mm", "feat_i8mm"),
}
# Libraries whose versions change the numbers.
LIBRARIES = ("edgekd", "numpy", "tokenizers", "onnxruntime", "openvino", "coremltools", "torch", "transformers")


def _slug(text: str) -> str:
    text = re.sub(r"\((r|tm|c)\)|cpu @.*$|processor", "", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:40] or "unknown-cpu"


def _sysctl(key: str) -> str:
    try:
        out = subprocess.run(["sysctl", "-n", key], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def parse_cpuinfo(text: str) -> tuple[str, set[str]]:
    """(CPU model, lower-case feature flags) from /proc/cpuinfo text (x86 'flags', ARM 'Features')."""
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.lower().split())
    return model, flags


def isa_features(flags: set[str]) -> dict[str, bool]:
    """Which ISA features of ISA_FLAGS the flag set has."""
    return {name: any(f in flags for f in names) for name, names in ISA_FLAGS.items()}


def _cpu() -> tuple[str, set[str]]:
    if sys.platform == "darwin":
        model = _sysctl("machdep.cpu.brand_string")
        flags = set(_sysctl("machdep.cpu.features").lower().split())
        flags |= set(_sysctl("machdep.cpu.leaf7_features").lower().split())
        if platform.machine() == "arm64":
            flags.add("neon")
            flags |= {k.rsplit(".", 1)[-1].lower() for k in ("hw.optional.arm.FEAT_DotProd", "hw.optional.arm.FEAT_I8MM")
                      if _sysctl(k) == "1"}
        return model or platform.processor(), flags
    try:
        return parse_cpuinfo(Path("/proc/cpuinfo").read_text(errors="replace"))
    except OSError:
        return platform.processor(), set()


def _memory_bytes() -> int | None:
    if sys.platform == "darwin":
        value = _sysctl("hw.memsize")
        return int(value) if value.isdigit() else None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _accelerators() -> list[str]:
    """GPU names from nvidia-smi when present (edgekd's CPU backends do not use them; reported for context)."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def _coreml_compute_units() -> list[str]:
    """Core ML compute units this machine offers (macOS only; empty elsewhere)."""
    if sys.platform != "darwin":
        return []
    try:
        import coremltools as ct
    except ImportError:
        return []
    return [u.name for u in ct.ComputeUnit]


def library_versions() -> dict[str, str | None]:
    """Installed version of each library in LIBRARIES (None when not installed)."""
    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def fingerprint() -> dict[str, Any]:
    """The device fingerprint: os, arch, cpu model, cores, ISA features, memory, accelerators,
    Core ML compute units, python and library versions, and a stable `device_id`."""
    model, flags = _cpu()
    info: dict[str, Any] = {
        "os": platform.system().lower(),
        "os_release": platform.release(),
        "os_version": platform.mac_ver()[0] if sys.platform == "darwin" else platform.version(),
        "arch": platform.machine().lower(),
        "cpu_model": model or "unknown",
        "logical_cores": os.cpu_count() or 0,
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0),
        "isa": isa_features(flags),
        "memory_bytes": _memory_bytes(),
        "accelerators": _accelerators(),
        "coreml_compute_units": _coreml_compute_units(),
        "python": platform.python_version(),
        "libraries": library_versions(),
    }
    info["device_id"] = device_id(info)
    return info


def device_id(info: dict[str, Any]) -> str:
    """`<os>-<arch>-<cpu-slug>-<hash8>`; the hash covers the hardware facts only (not library
    versions), so upgrading onnxruntime rewrites the same report file."""
    hw = {k: info.get(k) for k in ("os", "arch", "cpu_model", "logical_cores", "isa", "memory_bytes", "accelerators")}
    digest = hashlib.sha256(json.dumps(hw, sort_keys=True).encode()).hexdigest()[:8]
    return f"{info.get('os', 'unknown')}-{info.get('arch', 'unknown')}-{_slug(str(info.get('cpu_model', '')))}-{digest}"
