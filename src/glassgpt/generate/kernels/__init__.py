"""The decoding engine's one compiled kernel: one row times a weight matrix (rowdot.cpp).

It is built on first use with PyTorch's C++ extension tools and the machine's C++
compiler (for this CPU's vector instructions), once per machine, and kept in torch's
extension directory (TORCH_EXTENSIONS_DIR). Where it cannot be built (no compiler, no
ninja) or GLASSGPT_DECODE_KERNEL=0, decoding uses PyTorch's own products; a one-line
warning (KernelNotice) says it is being built, or why it could not be. It is only ever
called inside `fast_decode` (glassgpt.generate.fast).
"""
from __future__ import annotations

import functools
import hashlib
import os
import shutil
import warnings
from pathlib import Path
from typing import Callable

import torch

from ...errors import Notice

SOURCE = Path(__file__).with_name("rowdot.cpp")
FLAGS = ["-O3", "-march=native", "-fopenmp"]        # this CPU's vector instructions; OpenMP for CPU threads


class KernelNotice(Notice):
    """One line about the kernel: being built (once), or not buildable here."""


def enabled() -> bool:
    return os.environ.get("GLASSGPT_DECODE_KERNEL", "1").lower() not in ("0", "off", "false", "no")


def build_name() -> str:
    """One build per source, torch version and CPU (-march=native compiles for this one)."""
    cpu = ""
    try:
        cpu = Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0]
    except (OSError, IndexError):
        pass
    text = SOURCE.read_text() + torch.__version__ + " ".join(FLAGS) + cpu
    return "glassgpt_rowdot_" + hashlib.sha256(text.encode()).hexdigest()[:12]


def find_ninja() -> None:
    """PyTorch runs `ninja` from PATH; the ninja package (a glassgpt dependency) has one beside
    the venv's python, which is not on PATH when that python is run without activating the venv."""
    if shutil.which("ninja") is None:
        try:
            import ninja
            os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
        except ImportError:
            pass


@functools.cache
def rowdot() -> Callable | None:
    """torch.ops.glassgpt.rowdot(weight (out, in), x (1, in) float32, bias or None) -> (1, out)
    float32; None where the kernel is switched off or cannot be built."""
    if not enabled():
        return None
    from torch.utils import cpp_extension
    name = build_name()
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or cpp_extension.get_default_build_root()
    directory = Path(root, "glassgpt", name)
    if not (directory / f"{name}.so").is_file():
        warnings.warn("building the decode kernel for this CPU (once, ~15 s; GLASSGPT_DECODE_KERNEL=0 "
                      "skips it)", KernelNotice, stacklevel=2)
    try:
        find_ninja()
        directory.mkdir(parents=True, exist_ok=True)
        cpp_extension.load(name=name, sources=[str(SOURCE)], extra_cflags=FLAGS, extra_ldflags=["-fopenmp"],
                           build_directory=str(directory), is_python_module=False, verbose=False)
        return torch.ops.glassgpt.rowdot
    except Exception as error:                     # no compiler, no ninja, a refused flag: PyTorch's products
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        warnings.warn(f"the decode kernel could not be built ({reason[:160]}); decoding uses PyTorch's "
                      f"products (a C++ compiler and ninja make it 1.1-1.5x faster)", KernelNotice, stacklevel=2)
        return None
