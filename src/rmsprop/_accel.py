"""Finding the fused kernels: Numba and Triton load on first use, never on ``import rmsprop``.

Loading Numba and the cached kernels costs about a third of a second once per process,
so it happens on the first array of at least :data:`LOAD_MIN` elements; after
that, arrays of every size use the kernels. Small inputs in a fresh process (the
seed's examples, ``rmsprop step`` on small JSON) never wait for Numba.
``RMSPROP_KERNELS=0`` in the environment turns the kernels off.

The GPU kernel (:mod:`rmsprop._triton`) loads on the first CUDA tensor when Triton is
importable; ``RMSPROP_TRITON=0`` turns it off. A failure to load or to launch it
turns it off for the process with one warning naming the cause, and the
``torch._foreach_*`` path takes over.
"""

import os
import warnings
from types import ModuleType
from typing import Final

#: The smallest array that loads the kernels in a process that has none yet.
LOAD_MIN: Final = 1 << 16

_module: ModuleType | None = None
_enabled = os.environ.get("RMSPROP_KERNELS", "1") != "0"


def kernels(size: int) -> ModuleType | None:
    """:mod:`rmsprop._kernels`, loaded when ``size`` is worth it; None if unusable."""
    if _module is not None or not _enabled:
        return _module if _enabled else None
    return load() if size >= LOAD_MIN else None


def load() -> ModuleType | None:
    """Load the kernels now, whatever the size of the next array; None without Numba."""
    global _module, _enabled  # noqa: PLW0603
    if _module is None and _enabled:
        try:
            from rmsprop import _kernels  # noqa: PLC0415 - the point of this module
        except Exception:  # no Numba, or one that fails to load here: the NumPy path
            _enabled = False
        else:
            _module = _kernels
    return _module if _enabled else None


def set_enabled(enabled: bool) -> bool:
    """Turn the kernels on or off for this process; returns the previous setting."""
    global _enabled
    previous, _enabled = _enabled, enabled
    return previous


_triton: ModuleType | None = None
_triton_enabled = os.environ.get("RMSPROP_TRITON", "1") != "0"


def triton() -> ModuleType | None:
    """:mod:`rmsprop._triton` if Triton is importable and the GPU kernel is enabled."""
    global _triton  # noqa: PLW0603
    if _triton is None and _triton_enabled:
        try:
            from rmsprop import _triton as module  # noqa: PLC0415 - the point of this module
        except ImportError:  # no Triton: the foreach path, silently (it is an optional extra)
            disable_triton(None)
        except Exception as error:  # a Triton that fails to load here
            disable_triton(f"Triton failed to load: {error!r}")
        else:
            _triton = module
    return _triton if _triton_enabled else None


def disable_triton(cause: str | None) -> None:
    """Turn the GPU kernel off for this process, warning once with ``cause`` if given."""
    global _triton_enabled  # noqa: PLW0603
    if cause is not None and _triton_enabled:
        warnings.warn(
            f"rmsprop: the Triton kernel is off for this process ({cause}); "
            "the torch._foreach_* path is used instead (for low-bit state, the kernels' "
            "step in torch operations)",
            RuntimeWarning,
            stacklevel=3,
        )
    _triton_enabled = False


def set_triton_enabled(enabled: bool) -> bool:
    """Turn the GPU kernel on or off for this process; returns the previous setting."""
    global _triton_enabled
    previous, _triton_enabled = _triton_enabled, enabled
    return previous
