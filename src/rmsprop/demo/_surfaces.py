"""Two-dimensional problems on which gradient descent and RMSProp can be watched."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

import rmsprop
from rmsprop import Options

Vector = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Surface:
    """A function of (x, y), its gradient, a start, and each optimizer's settings."""

    name: str
    formula: str
    loss: Callable[[Vector], Vector]
    gradient: Callable[[Vector], Vector]
    start: tuple[float, float]
    minimum: tuple[float, float]
    steps: int
    gd_lr: float
    rmsprop_options: Options
    view: tuple[tuple[float, float], tuple[float, float]]


# The functions take p = (x, y) stacked on the first axis: points, or whole grids.
def _quadratic(p: Vector) -> Vector:
    return np.asarray(0.5 * (p[0] ** 2 + 1000.0 * p[1] ** 2))


def _quadratic_gradient(p: Vector) -> Vector:
    return np.array([p[0], 1000.0 * p[1]])


def _rosenbrock(p: Vector) -> Vector:
    return np.asarray((1.0 - p[0]) ** 2 + 100.0 * (p[1] - p[0] ** 2) ** 2)


def _rosenbrock_gradient(p: Vector) -> Vector:
    return np.array(
        [-2.0 * (1.0 - p[0]) - 400.0 * p[0] * (p[1] - p[0] ** 2), 200.0 * (p[1] - p[0] ** 2)]
    )


# Learning rates: gradient descent's largest stable one (2 / 1000 is the limit on the
# quadratic; 0.002 is the largest of 1e-3, 1.5e-3, 2e-3 that does not diverge on
# Rosenbrock), RMSProp's the best of 0.005, 0.01, 0.02 (0.05, 0.1, 0.2 on the quadratic).
SURFACES = (
    Surface(
        name="quadratic",
        formula="0.5 (x² + 1000 y²)",
        loss=_quadratic,
        gradient=_quadratic_gradient,
        start=(-8.0, 1.0),
        minimum=(0.0, 0.0),
        steps=200,
        gd_lr=1.9e-3,
        rmsprop_options={"lr": 0.1, "beta": 0.99},
        view=((-9.0, 2.0), (-1.3, 1.3)),
    ),
    Surface(
        name="rosenbrock",
        formula="(1 − x)² + 100 (y − x²)²",
        loss=_rosenbrock,
        gradient=_rosenbrock_gradient,
        start=(-1.5, 2.0),
        minimum=(1.0, 1.0),
        steps=600,
        gd_lr=2e-3,
        rmsprop_options={"lr": 0.01, "beta": 0.9},
        view=((-2.0, 2.0), (-0.5, 3.0)),
    ),
)


@dataclass(frozen=True)
class Path:
    """Where an optimizer went: positions (steps + 1, 2) and the loss at each."""

    optimizer: str
    settings: str
    points: Vector
    losses: Vector

    def summary(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer,
            "settings": self.settings,
            "final_point": self.points[-1].tolist(),
            "final_loss": float(self.losses[-1]),
            "losses": self.losses.tolist(),
        }


def descend(surface: Surface) -> tuple[Path, Path]:
    """Gradient descent and RMSProp from the surface's start, for its number of steps."""
    x = np.array(surface.start)
    gd = [x.copy()]
    for _ in range(surface.steps):
        x = x - surface.gd_lr * surface.gradient(x)
        gd.append(x.copy())
    x = np.array(surface.start)
    optimizer = rmsprop.RMSProp([x], **surface.rmsprop_options)
    rms = [x.copy()]
    for _ in range(surface.steps):
        optimizer.step([surface.gradient(x)])
        rms.append(x.copy())
    options = ", ".join(f"{k}={v:g}" for k, v in surface.rmsprop_options.items())
    return (
        _path("gradient descent", f"lr={surface.gd_lr:g}", np.array(gd), surface),
        _path("RMSProp", options, np.array(rms), surface),
    )


def _path(optimizer: str, settings: str, points: Vector, surface: Surface) -> Path:
    losses = surface.loss(points.T)
    return Path(optimizer, settings, points, losses)
