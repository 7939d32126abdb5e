"""Device fingerprint: parsing /proc/cpuinfo (x86 and ARM), ISA flags, the stable device id."""

from __future__ import annotations

import re

from edgekd.verify.device import device_id, fingerprint, isa_features, parse_cpuinfo

X86 = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.00GHz
flags\t\t: fpu sse2 avx2 avx512f avx512_vnni amx_tile amx_int8 avx_vnni
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.00GHz
flags\t\t: fpu
"""
ARM = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics asimddp i8mm
CPU implementer\t: 0x41
"""


def test_parse_x86_cpuinfo() -> None:
    model, flags = parse_cpuinfo(X86)
    assert model == "Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.00GHz"
    isa = isa_features(flags)
    assert isa["avx2"] and isa["avx512"] and isa["avx512_vnni"] and isa["amx"] and isa["avx_vnni"]
    assert not isa["neon"] and not isa["avx512_bf16"]


def test_parse_arm_cpuinfo() -> None:
    model, flags = parse_cpuinfo(ARM)
    isa = isa_features(flags)
    assert model == "" and isa["neon"] and isa["arm_dotprod"] and isa["arm_i8mm"] and not isa["avx2"]


def test_fingerprint_of_this_machine() -> None:
    info = fingerprint()
    assert info["logical_cores"] >= 1 and info["memory_bytes"] and info["memory_bytes"] > 2**28
    assert info["python"].count(".") == 2 and info["libraries"]["numpy"]
    assert set(info["isa"]) >= {"avx2", "avx512", "amx", "neon"}
    assert re.fullmatch(r"[a-z0-9_]+-[a-z0-9_]+-[a-z0-9-]+-[0-9a-f]{8}", info["device_id"])
    assert info["device_id"].startswith(f"{info['os']}-{info['arch']}-")
    assert fingerprint()["device_id"] == info["device_id"]  # stable across calls


def test_device_id_ignores_library_versions_but_not_hardware() -> None:
    info = {"os": "linux", "arch": "x86_64", "cpu_model": "Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.00GHz",
            "logical_cores": 8, "isa": {"avx2": True}, "memory_bytes": 2**34, "accelerators": []}
    a = device_id({**info, "libraries": {"onnxruntime": "1.18"}})
    assert a == device_id({**info, "libraries": {"onnxruntime": "1.23"}})
    assert a != device_id({**info, "logical_cores": 16})
    assert a.startswith("linux-x86_64-intel-xeon-platinum-8480-")
