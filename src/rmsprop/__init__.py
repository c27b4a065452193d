"""rmsprop: the RMSProp ("adaptive gradient scaling") update, exact for every kind of input.

>>> import rmsprop
>>> rmsprop.step(1.0, 0.1, 0.0, lr=0.1, beta=0.9)
(0.6837738151101336, 0.0009999999999999998)
"""

from rmsprop._step import step, step_

__version__ = "0.1.0"
__all__ = ["__version__", "step", "step_"]
