"""What this machine offers for inference: CPU instruction sets, CUDA, threads.

Read once from the operating system (``/proc/cpuinfo`` on Linux, ``sysctl`` on macOS) and torch; the
fastest deployment path is chosen from these facts, never from a machine's measured speed.
"""

from __future__ import annotations

import functools
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import FrozenSet, Tuple

import torch

# The CPU flags that decide a path: bf16 matrix units (AMX), bf16 vector instructions, int8 dot products.
RELEVANT_FLAGS = ("amx_bf16", "amx_int8", "amx_tile", "avx512_bf16", "avx512_vnni", "avx_vnni", "avx512f", "avx2")


@dataclass(frozen=True)
class Machine:
    """Facts about the machine that pick a deployment path.

    Attributes:
        cpu: the CPU's model name.
        flags: the CPU's instruction-set flags (lower case, as Linux names them).
        threads: torch's intra-op threads.
        cuda: CUDA device names, empty without one.
    """

    cpu: str
    flags: FrozenSet[str] = field(default_factory=frozenset)
    threads: int = 1
    cuda: Tuple[str, ...] = ()

    @property
    def amx(self) -> bool:
        """bf16 matrix tiles (Intel Sapphire Rapids and later)."""
        return {"amx_bf16", "amx_tile"} <= self.flags

    @property
    def avx512_bf16(self) -> bool:
        """bf16 dot-product vector instructions (Cooper Lake, Zen 4 and later)."""
        return "avx512_bf16" in self.flags

    @property
    def fast_bf16(self) -> bool:
        """bf16 convolutions run faster than fp32 here (AMX or AVX-512 BF16); without either, oneDNN
        emulates bf16 and it is slower than fp32."""
        return self.amx or self.avx512_bf16

    @property
    def vnni(self) -> bool:
        """int8 dot-product instructions, what makes int8 convolutions pay on a CPU."""
        return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & self.flags)

    def relevant_flags(self) -> Tuple[str, ...]:
        """The flags among :data:`RELEVANT_FLAGS` this CPU has (what ``benchmark`` prints)."""
        return tuple(f for f in RELEVANT_FLAGS if f in self.flags)

    def describe(self) -> str:
        """One line: CPU model, the flags that decide a path, threads and CUDA devices."""
        gpu = f", CUDA: {', '.join(self.cuda)}" if self.cuda else ", no CUDA device"
        return f"{self.cpu} ({' '.join(self.relevant_flags()) or 'no AVX2/AVX-512'}), {self.threads} threads{gpu}"


@functools.lru_cache(maxsize=1)
def _cpu_facts() -> Tuple[str, FrozenSet[str]]:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        fields = {}
        for line in cpuinfo.read_text().splitlines():  # the first CPU's entries
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
        name = fields.get("model name") or platform.processor() or "unknown CPU"
        return name, frozenset((fields.get("flags") or fields.get("Features") or "").split())
    if platform.system() == "Darwin":
        name = _sysctl("machdep.cpu.brand_string") or platform.processor() or "unknown CPU"
        flags = _sysctl("machdep.cpu.features") + " " + _sysctl("machdep.cpu.leaf7_features")
        return name, frozenset(f.lower().replace(".", "_") for f in flags.split())
    return platform.processor() or "unknown CPU", frozenset()


def _sysctl(key: str) -> str:
    try:
        return subprocess.run(["sysctl", "-n", key], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""


def this_machine() -> Machine:
    """The current machine's facts (CPU flags cached; threads and CUDA read now)."""
    cpu, flags = _cpu_facts()
    cuda = (
        tuple(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        if torch.cuda.is_available()
        else ()
    )
    return Machine(cpu, flags, torch.get_num_threads(), cuda)
