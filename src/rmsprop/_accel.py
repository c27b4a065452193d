"""Finding the fused kernels: Numba is imported on first use, never by ``import rmsprop``.

Loading Numba and the cached kernels costs about a quarter of a second once per process,
so it happens on the first array of at least :data:`LOAD_MIN` elements; after
that, arrays of every size use the kernels. Small inputs in a fresh process (the
seed's examples, ``rmsprop step`` on small JSON) never wait for Numba.
``RMSPROP_KERNELS=0`` in the environment turns the kernels off.
"""

import os
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
