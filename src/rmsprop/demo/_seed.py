"""The seed's three worked examples and the values the seed prints for them."""

from dataclasses import dataclass
from typing import Any

import rmsprop


@dataclass(frozen=True)
class Example:
    """One worked example of the seed: inputs and the values the seed prints."""

    params: list[float]
    grads: list[float]
    cache: list[float]
    lr: float
    beta: float
    printed_params: list[float]
    printed_cache: list[float]

    def run(self) -> dict[str, Any]:
        """The step's results, exact and to the seed's 6 decimals, beside the seed's."""
        params, cache = rmsprop.step(self.params, self.grads, self.cache, self.lr, self.beta)
        return {
            "inputs": {
                "params": self.params,
                "grads": self.grads,
                "cache": self.cache,
                "lr": self.lr,
                "beta": self.beta,
            },
            "params": params,
            "cache": cache,
            "params_6_decimals": [round(x, 6) for x in params],
            "cache_6_decimals": [round(x, 6) for x in cache],
            "seed_prints": {"params": self.printed_params, "cache": self.printed_cache},
        }


SEED_EXAMPLES = (
    Example([1.0], [0.1], [0.0], 0.1, 0.9, [0.683772], [0.001]),
    Example(
        [1.0, 2.0, 3.0],
        [0.1, 0.2, 0.3],
        [0.0, 0.0, 0.0],
        0.01,
        0.9,
        [0.968377, 1.968377, 2.968377],
        [0.001, 0.004, 0.009],
    ),
    Example(
        [0.5, -0.5],
        [0.05, -0.05],
        [0.01, 0.01],
        0.001,
        0.99,
        [0.499498, -0.499498],
        [0.009925, 0.009925],
    ),
)
