"""Provenance of a run: versions, git commit, device (stored with every run)."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the coreset-bench source tree when it is a git checkout, else None."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=5)
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def environment(device: str = "cpu", method: Any = None) -> dict[str, Any]:
    import torch

    from . import __version__

    env: dict[str, Any] = {
        "coreset_bench": __version__,
        "git_commit": git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "device": device,
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
    }
    if method is not None:
        env["plugin_package"] = getattr(method, "package", "")
        env["plugin_package_version"] = _dist_version(getattr(method, "package", ""))
        env["method_version"] = method.version
    return env


def _dist_version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    if not package or package.startswith("("):
        return ""
    try:
        return version(package)
    except PackageNotFoundError:
        return ""


def pick_device(requested: str | None) -> str:
    import torch

    if requested and requested != "auto":
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"--device {requested}: CUDA is not available on this machine; use --device cpu")
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"
