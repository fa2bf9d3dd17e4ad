"""Process-wide settings that the shared options set: logging, threads, device.

Kept free of heavy imports: torch and SimpleITK are configured by the code
that imports them, by calling :func:`configure_torch` / :func:`configure_itk`.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import warnings
from dataclasses import dataclass, field

log = logging.getLogger("medcli")


@dataclass
class Runtime:
    """The values of the shared options for this process."""

    quiet: bool = False
    verbose: int = 0
    debug: bool = False
    threads: int | None = None
    device: str = "auto"
    command: str = ""
    argv: list[str] = field(default_factory=list)


state = Runtime()


class _StderrFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = record.levelname.lower()
        prefix = "medcli: " if level in ("info", "debug") else f"medcli: {level}: "
        return prefix + record.getMessage()


def setup_logging(quiet: bool = False, verbose: int = 0) -> None:
    """Logs go to stderr: errors always, warnings unless ``-q``, info with ``-v``."""
    log.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_StderrFormatter())
    log.addHandler(handler)
    log.propagate = False
    if quiet:
        log.setLevel(logging.ERROR)
    elif verbose >= 2:
        log.setLevel(logging.DEBUG)
    elif verbose == 1:
        log.setLevel(logging.INFO)
    else:
        log.setLevel(logging.WARNING)
    logging.captureWarnings(True)
    pyw = logging.getLogger("py.warnings")
    pyw.handlers = [handler]
    pyw.propagate = False
    pyw.setLevel(logging.ERROR if quiet else logging.WARNING)


def default_threads() -> int:
    """``SLURM_CPUS_PER_TASK``, else ``OMP_NUM_THREADS``, else all usable cores."""
    for var in ("SLURM_CPUS_PER_TASK", "OMP_NUM_THREADS"):
        val = os.environ.get(var, "").strip()
        if val.isdigit() and int(val) > 0:
            return int(val)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        return os.cpu_count() or 1


def configure_threads(threads: int | None) -> int:
    """Apply the thread count to BLAS/OpenMP now and to torch/ITK when imported."""
    n = threads or default_threads()
    state.threads = n
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
        os.environ[var] = str(n)
    if "numpy" in sys.modules:
        try:
            from threadpoolctl import threadpool_limits

            threadpool_limits(n)
        except ImportError:
            pass
    if "torch" in sys.modules:
        configure_torch()
    if "SimpleITK" in sys.modules:
        configure_itk(sys.modules["SimpleITK"])
    return n


def configure_torch():
    """Import torch with the process's thread count applied; returns the module.

    It also flushes subnormal floats to zero in the calling thread (``torch.set_flush_denormal``), for
    the rest of the process: a medcli command owns its process, so that is the whole run. Python code
    that calls medcli's functions and then needs gradual underflow itself can switch it back with
    ``torch.set_flush_denormal(False)``; scikit-image's ``blob_log`` crashed under it in
    ``tests/benchmarks/bench_detect.py``, which does so around its peer's calls.
    """
    import torch

    n = state.threads or default_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    # Subnormal floats (below ~1e-38) take a microcode path on x86 that is tens of times slower: HD-BET's
    # normalised activations produce them, and one fold ran 30x slower on this CPU (735 vs 25 CPU s at 3 mm).
    # Flushing them to zero changes no result by more than those values themselves.
    torch.set_flush_denormal(True)
    # With subnormals flushed, numpy finds its smallest subnormal to be zero and says so on every later
    # finfo lookup: the flushing is deliberate, and stderr keeps to one line per problem.
    warnings.filterwarnings("ignore", message="The value of the smallest subnormal", category=UserWarning)
    return torch


def configure_itk(sitk) -> None:
    n = state.threads or default_threads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(n)


_device_logged: list[str] = []


def torch_device(name: str | None = None):
    """The torch device for ``--device`` (auto: CUDA, then MPS, then CPU)."""
    from medcli.errors import UsageError

    torch = configure_torch()
    name = (name or state.device or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            picked = torch.device("cuda")
            why = f"{torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} visible"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            picked, why = torch.device("mps"), "Apple GPU"
        else:
            picked, why = torch.device("cpu"), f"torch sees no GPU; --threads {state.threads or default_threads()}"
        # Once per process: a batch job's log should say where it ran (a --gres=gpu:1 task on
        # the CPU is the classic silent slowdown), not repeat it for every image.
        if not _device_logged:
            _device_logged.append(str(picked))
            log.info(f"device: {picked} (--device auto: {why})")
        return picked
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: no CUDA device is available (use --device cpu)")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError("--device mps: MPS is not available (use --device cpu)")
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise UsageError(f"--device {name}: {e}") from e


def check_device(name: str) -> str:
    """Refuse a ``--device`` that is malformed or absent, before any work.

    ``auto`` and ``cpu`` cost nothing; ``cuda``/``mps`` import torch to ask
    whether the device exists (the user asked for it, so torch is coming anyway).

    Raises:
        UsageError: unknown name, or no such device on this machine.
    """
    import re

    from medcli.errors import UsageError

    name = (name or "auto").strip().lower()
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", name):
        raise UsageError(f"--device {name}: expected auto, cpu, cuda, cuda:N or mps")
    if name.startswith("cuda"):
        torch = configure_torch()
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: no CUDA device is available (use --device cpu)")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) are available")
    elif name == "mps":
        torch = configure_torch()
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UsageError("--device mps: MPS is not available (use --device cpu)")
    return name


def progress_enabled() -> bool:
    """Progress bars only for a person watching: stderr is a terminal and not ``-q``."""
    return not state.quiet and sys.stderr.isatty()


def progress(total: int | None = None, description: str = ""):
    """A rich progress bar on stderr, or a no-op when nobody watches.

    Example:
        >>> with progress(3, "patches") as advance:
        ...     for _ in range(3):
        ...         advance()
    """
    from contextlib import contextmanager

    @contextmanager
    def _cm():
        if not progress_enabled():
            yield lambda n=1: None
            return
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        ) as bar:
            task = bar.add_task(description, total=total)
            yield lambda n=1: bar.advance(task, n)

    return _cm()


def install_signal_handlers() -> None:
    """Turn SIGTERM (an HPC job hitting its time limit) into KeyboardInterrupt.

    ``KeyboardInterrupt`` unwinds the stack, so every ``atomic_output`` block
    removes its temporary file, exactly as for Ctrl-C.
    """

    def _raise(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        signal.signal(signal.SIGTERM, _raise)
        # A file-size limit (ulimit -f) must fail the write with EFBIG, not kill us
        # before the temporary file is removed.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    except (ValueError, AttributeError):  # not in the main thread, or no SIGXFSZ
        pass
