"""``rmsprop.torch``: the RMSProp family as ``torch.optim`` optimizers.

- :class:`RMSProp`: the whole family and its presets, computed wide and rounded once
  (or, with ``rounding="pytorch"``, PyTorch's own numbers);
- :class:`RMSprop`: ``torch.optim.RMSprop``'s signature and numbers, bit for bit;
- :func:`flatten_`: a model's parameters and gradients as views of flat buffers
  (:func:`unflatten_` undoes it).

Importing this package imports PyTorch; ``import rmsprop`` alone does not.
"""

from rmsprop.torch._flatten import flatten_, unflatten_
from rmsprop.torch._optimizer import RMSProp, RMSprop

__all__ = ["RMSProp", "RMSprop", "flatten_", "unflatten_"]
