"""``--precision auto``: the numeric precision this machine runs fast, never one that makes training slower.

bf16 autocast pays only where the hardware computes in bf16. Elsewhere PyTorch emulates it: on this project's
AVX2 EPYC (no AVX-512), conv-ae trained about 10x slower in ``bf16-mixed`` than in fp32 (``benchmarks/precision.py``;
the figures and the command are in docs/benchmarks.md). ``auto`` therefore picks, from the machine's facts:

- a CUDA GPU with native bf16 (compute capability 8.0 and later: Ampere, Hopper, ...): ``bf16-mixed``;
  an older one with fp16 tensor cores (7.x: Volta, Turing): ``16-mixed`` (fp16 AMP with loss scaling);
  older still: ``32-true`` (Pascal's consumer cards run fp16 at a fraction of their fp32 rate);
- a CPU whose ``/proc/cpuinfo`` flags have ``avx512_bf16`` or ``amx_bf16`` (Intel Cooper Lake, Sapphire Rapids
  and later; AMD Zen 4 and later): ``bf16-mixed``; any other CPU: ``32-true``;
- Apple's MPS, or a machine whose facts cannot be read: ``32-true``.

:func:`resolve_precision` is a pure function of those facts (:class:`Machine`), so it is tested on the flag sets
of machines we do not have; :func:`this_machine` reads them. The names are Lightning's (``Trainer(precision=)``).
Torch is imported only by :func:`this_machine`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 /proc/cpuinfo flags of bf16 arithmetic in hardware
# measured here (benchmarks/precision.py, docs/benchmarks.md "Precision"): conv-ae on MNIST, one thread, one process
EMULATED_BF16_COST = "conv-ae trained about 10x slower than in fp32 on an AVX2 EPYC"
LIGHTNING_NAMES = {"32": "32-true", "64": "64-true", "bf16-mixed": "bf16-mixed", "16-mixed": "16-mixed"}


@dataclass(frozen=True)
class Machine:
    """The facts the precision depends on. ``device``: where training runs (``cpu``, ``cuda`` or ``mps``)."""

    device: str = "cpu"
    cpu_model: str = ""
    cpu_flags: frozenset[str] = field(default_factory=frozenset)
    cuda_name: str = ""
    cuda_capability: tuple[int, int] | None = None  # (major, minor) of the first GPU
    cuda_bf16: bool = False  # native bf16 (torch.cuda.is_bf16_supported(including_emulation=False))

    @property
    def native_bf16(self) -> bool:
        if self.device == "cuda":
            return self.cuda_bf16
        return self.device == "cpu" and any(f in self.cpu_flags for f in NATIVE_BF16_CPU_FLAGS)


def read_cpuinfo(text: str | None = None) -> tuple[str, frozenset[str]]:
    """(model name, flags) of the first processor in ``/proc/cpuinfo`` text (read from the file when None);
    ("", {}) where there is none (macOS, Windows)."""
    if text is None:
        try:
            text = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return "", frozenset()
    model, flags = "", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:  # x86 "flags", Arm "Features"
            flags = frozenset(value.split())
    return model, flags


def device_of(accelerator: str) -> str:
    """The device Lightning trains on for ``--accelerator`` (its ``auto`` order: MPS, then CUDA, then the CPU)."""
    import torch

    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if accelerator in ("cuda", "cpu", "mps"):
        return accelerator
    if accelerator == "gpu":
        return "cuda" if torch.cuda.is_available() else "mps"
    return "mps" if mps else "cuda" if torch.cuda.is_available() else "cpu"


def this_machine(accelerator: str = "auto") -> Machine:
    """The facts of the machine this process runs on, for ``--accelerator``."""
    import torch

    device = device_of(accelerator)
    model, flags = read_cpuinfo()
    if device != "cuda" or not torch.cuda.is_available():
        return Machine(device, model, flags)
    try:
        bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # torch < 2.3 has no including_emulation: bf16 is native from compute capability 8.0
        bf16 = torch.cuda.get_device_capability(0) >= (8, 0)
    return Machine(device, model, flags, torch.cuda.get_device_name(0), tuple(torch.cuda.get_device_capability(0)), bf16)


def resolve_precision(asked: str, machine: Machine) -> str:
    """Lightning's precision for ``--precision asked`` on ``machine``: ``auto`` by the rules of this module's
    docstring; any other value as asked, in Lightning's spelling (``32`` -> ``32-true``)."""
    if asked != "auto":
        if asked == "16-mixed" and machine.device == "cpu":
            return "bf16-mixed"  # what Lightning runs for 16-mixed on a CPU (it has no fp16 AMP there)
        return LIGHTNING_NAMES.get(asked, asked)
    if machine.native_bf16:
        return "bf16-mixed"
    if machine.device == "cuda" and machine.cuda_capability is not None and machine.cuda_capability >= (7, 0):
        return "16-mixed"
    return "32-true"


def precision_warning(asked: str, machine: Machine) -> str | None:
    """One line when ``asked`` runs bf16 on hardware that emulates it, with what that cost here; else None."""
    if resolve_precision(asked, machine) != "bf16-mixed" or machine.native_bf16 or asked == "auto":
        return None
    if machine.device == "cpu":
        what = asked if asked == "bf16-mixed" else f"{asked} (bf16 on a CPU)"
        return (f"aekit: warning: --precision {what} is emulated on this CPU (no {' or '.join(NATIVE_BF16_CPU_FLAGS)} "
                f"in /proc/cpuinfo) and slower than fp32 ({EMULATED_BF16_COST}, docs/benchmarks.md); "
                f"--precision auto uses {resolve_precision('auto', machine)} here")
    if machine.device == "cuda":
        cc = ".".join(map(str, machine.cuda_capability or ()))
        return (f"aekit: warning: --precision {asked} is emulated on this GPU ({machine.cuda_name or 'CUDA'}, compute "
                f"capability {cc or '?'}: native bf16 needs 8.0); --precision auto uses "
                f"{resolve_precision('auto', machine)} here")
    return None


def choose_precision(asked: str, accelerator: str = "auto", *, warn: bool = True) -> str:
    """Lightning's precision for this machine; with ``warn``, the one-line warning of :func:`precision_warning`
    on stderr (rank 0 warns, the other processes of a run do not)."""
    machine = this_machine(accelerator)
    message = precision_warning(asked, machine) if warn else None
    if message:
        print(message, file=sys.stderr)
    return resolve_precision(asked, machine)
