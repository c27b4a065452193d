"""rmsprop: the RMSProp ("adaptive gradient scaling") update, exact for every kind of input.

- :func:`step` / :func:`step_`: the seed's single update, pure or in place, for
  Python numbers and lists, NumPy and any array-API array.
- :class:`RMSProp`: the whole family (momentum, centered, weight decay, framework
  presets) as an optimizer over NumPy arrays; ``rmsprop.torch.RMSProp`` is the
  same for PyTorch, ``rmsprop.optax.rmsprop`` an optax transformation for JAX
  (imported on first use: ``import rmsprop`` imports neither torch nor JAX).

>>> import rmsprop
>>> rmsprop.step(1.0, 0.1, 0.0, lr=0.1, beta=0.9)
(0.6837738151101336, 0.0009999999999999998)
"""

import importlib
from types import ModuleType

from rmsprop._accel import load as _load
from rmsprop._optimizer import RMSProp
from rmsprop._options import PRESETS, Hyperparameters, Options
from rmsprop._step import step, step_

__version__ = "0.1.0"
__all__ = [
    "PRESETS",
    "Hyperparameters",
    "Options",
    "RMSProp",
    "__version__",
    "load_kernels",
    "step",
    "step_",
]


def load_kernels() -> bool:
    """Load the fused Numba kernels now; returns whether they are available.

    They load by themselves on the first array of 65,536 elements or more (about
    0.3 s once per process, compiled code cached on disk); call this to have
    smaller arrays use them from the first call too. Without Numba, or with
    ``RMSPROP_KERNELS=0`` in the environment, the NumPy path is used.
    """
    return _load() is not None


def __getattr__(name: str) -> ModuleType:
    if name in ("torch", "optax"):  # without an explicit import, loaded on first use
        return importlib.import_module(f"rmsprop.{name}")
    raise AttributeError(f"module 'rmsprop' has no attribute {name!r}")
