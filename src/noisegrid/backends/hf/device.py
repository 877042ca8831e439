"""Where the Hugging Face backends compute, in which precision, and seeding torch per cell.

:func:`choose_device` (cuda, else mps, else cpu), :func:`autocast_dtype` for ``[train]
precision`` (bf16 where the hardware has it natively), :func:`autocast` (and
:func:`active_autocast_dtype`, what the enclosing one computes in) and :func:`seeded`.
torch is imported only inside functions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ...errors import BackendError

if TYPE_CHECKING:
    import torch


def choose_device() -> torch.device:
    """cuda if available, else mps, else cpu."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 / AMX); emulated bf16 is slower."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - builds without oneDNN
        return False


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype for ``[train] precision`` on ``device`` (None: plain fp32).

    ``auto`` picks bf16 on GPUs that support it (else fp16), fp16 on Apple GPUs, bf16 on CPUs
    with native bf16 and fp32 elsewhere (on CPUs without it, bf16 is emulated and slower).

    Raises
    ------
    BackendError
        ``bf16`` was asked for on a GPU without bf16 support.
    """
    import torch

    if precision == "fp32":
        return None
    if precision == "fp16":
        return torch.float16
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if precision == "bf16":
        if device.type == "cuda" and not cuda_bf16:
            raise BackendError(
                "[train] precision 'bf16' is not supported by this GPU; use 'fp16', 'fp32' or "
                "'auto'"
            )
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if cuda_bf16 else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else None


def precision_name(dtype: torch.dtype | None) -> str:
    """``fp32``, ``bf16`` or ``fp16``."""
    import torch

    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def autocast(
    device: torch.device, dtype: torch.dtype | None
) -> contextlib.AbstractContextManager[Any]:
    """An autocast context for ``dtype`` on ``device`` (a no-op for fp32)."""
    import torch

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def active_autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype the enclosing autocast context computes matrix products in on ``device_type``,
    None when autocast is off (torch 2.4's per-device functions, or the older CUDA- and
    CPU-specific ones)."""
    import torch

    if hasattr(torch, "get_autocast_dtype"):
        on = torch.is_autocast_enabled(device_type)
        return torch.get_autocast_dtype(device_type) if on else None
    if device_type == "cpu":  # pragma: no cover - torch before 2.4
        on = torch.is_autocast_cpu_enabled()
        return torch.get_autocast_cpu_dtype() if on else None
    on = torch.is_autocast_enabled()  # pragma: no cover - torch before 2.4
    return torch.get_autocast_gpu_dtype() if on else None  # pragma: no cover


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's generators for the block and restore them after (no global state leaks).

    Initialisation of new weights and dropout draw from torch's global generators, which cannot be
    passed explicitly; forking them keeps every cell reproducible on its own.
    """
    import torch

    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=device.type):
        torch.manual_seed(seed)
        yield


Mapper = Callable[[Callable[[Any], Any], Sequence[Any]], Iterator[Any]]


@contextlib.contextmanager
def batch_parallel(device: torch.device) -> Iterator[Mapper]:
    """A ``map`` over inference batches that runs one batch per CPU core at a time.

    On a CPU with several torch threads, torch computes with one thread for the block and as many
    batches run at once, in a thread pool (torch releases the GIL inside its kernels); results
    come back in order, and each batch's numbers are those a single thread computes. With int8
    layers this pays: MiniLM at 256 tokens on 2 AVX2 cores encoded 26.8-29.9 reviews/s with two
    batches at once against 21.3-22.4 with two threads per batch (fp32: 18.2-19.1 against
    17.4-18.0). Elsewhere (GPUs, one thread) it is the builtin ``map``.
    """
    import torch

    threads = torch.get_num_threads()
    if device.type != "cpu" or threads < 2:
        yield map
        return
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="noisegrid-batch")

    def mapper(fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[Any]:
        futures = [pool.submit(fn, item) for item in items]
        for future in futures:
            yield future.result()

    torch.set_num_threads(1)
    try:
        yield mapper
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(threads)
