"""Atomic training checkpoints that load with ``torch.load(weights_only=True)``.

Everything stored is a tensor or a plain Python value (dict, list, tuple, str, int,
float, bool, None): random-number-generator states included, which is why numpy's state is
kept as an int64 tensor and Python's as a tuple of ints.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_NAME = "last.pt"
FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically: save to a temporary file beside it, then ``os.replace``.

    A reader never sees a half-written file; a crash leaves the previous checkpoint intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle errors, truncated files, unsupported types
        raise ValueError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: not a tlcore training checkpoint (format_version {FORMAT_VERSION} expected)")
    return state


def capture_rng_state() -> dict[str, Any]:
    """Python, numpy, torch CPU and (when initialised) CUDA generator states, as safe types."""
    version, internal, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": (int(version), tuple(int(v) for v in internal), gauss),
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
        "cuda": None,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(v) for v in internal), gauss))
    np_state = state["numpy"]
    np.random.set_state((
        np_state["name"],
        np_state["keys"].numpy().astype(np.uint32),
        int(np_state["pos"]),
        int(np_state["has_gauss"]),
        float(np_state["cached_gaussian"]),
    ))
    torch.set_rng_state(state["torch"].cpu())
    cuda_states = state.get("cuda")
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])


def cpu_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a module's state dict (safe to keep while training goes on)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def cpu_state_view(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The module's state dict on the CPU for an immediate ``torch.save``: no copy when it
    already lives there (unlike :func:`cpu_state_dict`, it must not be kept while training goes on)."""
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


class SigtermCheckpoint:
    """While active, SIGTERM saves the epochs a checkpoint does not hold yet, then stops.

    ``has_unsaved()`` says whether completed epochs are missing from the checkpoint. On
    SIGTERM with nothing unsaved the previous handler runs at once (the partial epoch is
    lost, nothing else); otherwise ``requested`` is set so the loop finishes the current
    epoch, saves it and calls :meth:`stop`, which hands the signal to the previous handler
    (default: the process ends; the study runner's: KeyboardInterrupt). Unsaved epochs only
    exist when epochs are shorter than the checkpoint interval, so the wait is short. Only
    installed in the main thread, and never over an ignored SIGTERM.
    """

    def __init__(self, has_unsaved: Any) -> None:
        self.has_unsaved = has_unsaved
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> "SigtermCheckpoint":
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGTERM)
            if previous is not signal.SIG_IGN:
                self._previous = previous
                signal.signal(signal.SIGTERM, self._handle)
                self._installed = True
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if self.requested and exc_type is None:  # the signal came too late for the loop
            self.stop()
        self._restore()

    def _restore(self) -> None:
        import signal

        if self._installed:
            signal.signal(signal.SIGTERM, self._previous if self._previous is not None else signal.SIG_DFL)
            self._installed = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self.has_unsaved():
            self.requested = True
            return
        self.stop(frame)

    def stop(self, frame: Any = None) -> None:
        """Hand SIGTERM to the handler that was there before (ends the process by default)."""
        import signal

        previous = self._previous
        self._restore()
        if callable(previous):
            previous(signal.SIGTERM, frame)
        else:  # SIG_DFL (or unknown): terminate as the signal would have
            os.kill(os.getpid(), signal.SIGTERM)
