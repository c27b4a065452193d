"""A small neural network trained on handwritten digits with several optimizers.

The data are the 1,797 8x8 images of scikit-learn's ``load_digits`` (the test set
of E. Alpaydin and C. Kaynak's "Optical Recognition of Handwritten Digits", UCI
Machine Learning Repository, CC BY 4.0), shipped in ``digits.npz`` beside this
file: pixels 0..16 as uint8 and labels 0..9.
"""

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

import rmsprop

Array = npt.NDArray[np.float64]

HIDDEN = 32
BATCH = 32
EVALUATE_EVERY = 50  # steps between test-accuracy points of the curves


def load_digits() -> tuple[Array, npt.NDArray[np.int64]]:
    """Images as float64 rows scaled to [0, 1], and their labels."""
    with (
        resources.files(__package__).joinpath("digits.npz").open("rb") as file,
        np.load(file) as data,
    ):
        return data["images"].astype(np.float64) / 16.0, data["labels"].astype(np.int64)


def split(
    labels: npt.NDArray[np.int64], random_seed: int, test_fraction: float = 0.25
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Stratified train/test indices: the same share of every digit in the test set."""
    rng = np.random.default_rng(random_seed)
    train, test = [], []
    for digit in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == digit))
        n_test = round(len(members) * test_fraction)
        test.append(members[:n_test])
        train.append(members[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


class MLP:
    """64 inputs -> tanh hidden layer -> 10-way softmax, with hand-written gradients."""

    def __init__(self, random_seed: int, inputs: int = 64, hidden: int = HIDDEN, classes: int = 10):
        rng = np.random.default_rng(random_seed)
        limit_1 = np.sqrt(6.0 / (inputs + hidden))
        limit_2 = np.sqrt(6.0 / (hidden + classes))
        self.params: list[Array] = [
            rng.uniform(-limit_1, limit_1, (inputs, hidden)),
            np.zeros(hidden),
            rng.uniform(-limit_2, limit_2, (hidden, classes)),
            np.zeros(classes),
        ]

    def logits(self, x: Array) -> tuple[Array, Array]:
        w1, b1, w2, b2 = self.params
        hidden = np.tanh(x @ w1 + b1)
        return hidden @ w2 + b2, hidden

    def loss_and_gradients(
        self, x: Array, labels: npt.NDArray[np.int64]
    ) -> tuple[float, list[Array]]:
        """Mean cross-entropy over the batch and its gradient for each parameter."""
        logits, hidden = self.logits(x)
        probabilities = _softmax(logits)
        n = len(labels)
        loss = float(-np.log(probabilities[np.arange(n), labels] + 1e-300).mean())
        d_logits = probabilities
        d_logits[np.arange(n), labels] -= 1.0
        d_logits /= n
        d_hidden = (d_logits @ self.params[2].T) * (1.0 - hidden**2)
        grads = [x.T @ d_hidden, d_hidden.sum(0), hidden.T @ d_logits, d_logits.sum(0)]
        return loss, grads

    def evaluate(self, x: Array, labels: npt.NDArray[np.int64]) -> tuple[float, float]:
        """(mean cross-entropy, accuracy)."""
        logits, _ = self.logits(x)
        probabilities = _softmax(logits)
        loss = float(-np.log(probabilities[np.arange(len(labels)), labels] + 1e-300).mean())
        return loss, float((logits.argmax(1) == labels).mean())


def _softmax(logits: Array) -> Array:
    shifted = np.exp(logits - logits.max(1, keepdims=True))
    result: Array = shifted / shifted.sum(1, keepdims=True)
    return result


class Stepper(Protocol):
    def step(self, grads: Sequence[Array]) -> None: ...


class SGD:
    """Plain gradient descent: p -= lr * g."""

    def __init__(self, params: list[Array], lr: float):
        self.params, self.lr = params, lr

    def step(self, grads: Sequence[Array]) -> None:
        for p, g in zip(self.params, grads, strict=True):
            p[...] -= self.lr * g


class Adam:
    """Adam (Kingma and Ba, 2015) with bias correction, for comparison."""

    def __init__(self, params: list[Array], lr: float, betas: tuple[float, float] = (0.9, 0.999)):
        self.params, self.lr, self.betas, self.t = params, lr, betas, 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def step(self, grads: Sequence[Array]) -> None:
        self.t += 1
        b1, b2 = self.betas
        for p, g, m, v in zip(self.params, grads, self.m, self.v, strict=True):
            m[...] = b1 * m + (1 - b1) * g
            v[...] = b2 * v + (1 - b2) * g * g
            p[...] -= self.lr * (m / (1 - b1**self.t)) / (np.sqrt(v / (1 - b2**self.t)) + 1e-8)


class TorchRMSprop:
    """torch.optim.RMSprop over zero-copy tensor views of the NumPy parameters."""

    def __init__(self, params: list[Array], lr: float, alpha: float):
        import torch  # noqa: PLC0415 - optional

        self.tensors = [torch.from_numpy(p) for p in params]
        self.optimizer = torch.optim.RMSprop(self.tensors, lr=lr, alpha=alpha)
        self._from_numpy = torch.from_numpy

    def step(self, grads: Sequence[Array]) -> None:
        for t, g in zip(self.tensors, grads, strict=True):
            t.grad = self._from_numpy(g)
        self.optimizer.step()


@dataclass(frozen=True)
class Contender:
    """An optimizer of the comparison: its name, settings, and how to build it."""

    name: str
    settings: str
    make: Callable[[list[Array]], Stepper]


#: The name of the row with half the state memory (bfloat16 state, state_bits=16).
SIXTEEN_BIT = "rmsprop.RMSProp 16-bit"


def contenders(with_torch: bool, with_16_bit: bool = False) -> list[Contender]:
    """RMSProp (this library), SGD, Adam, torch.optim.RMSprop when torch is importable,
    and RMSProp with 16-bit state (``state_bits=16``, which needs ml_dtypes)."""
    chosen = [
        Contender(
            "rmsprop.RMSProp", "lr=1e-3, beta=0.9", lambda p: rmsprop.RMSProp(p, lr=1e-3, beta=0.9)
        ),
        Contender("SGD", "lr=0.1", lambda p: SGD(p, lr=0.1)),
        Contender("Adam", "lr=1e-3, betas=(0.9, 0.999)", lambda p: Adam(p, lr=1e-3)),
    ]
    if with_torch:
        chosen.append(
            Contender(
                "torch.optim.RMSprop",
                "lr=1e-3, alpha=0.9",
                lambda p: TorchRMSprop(p, lr=1e-3, alpha=0.9),
            )
        )
    if with_16_bit:
        chosen.append(
            Contender(
                SIXTEEN_BIT,
                "the same, state_bits=16",
                lambda p: rmsprop.RMSProp(p, lr=1e-3, beta=0.9, state_bits=16),
            )
        )
    return chosen


@dataclass
class Run:
    """What one optimizer achieved on the digits."""

    name: str
    settings: str
    steps: int
    train_losses: list[float] = field(default_factory=list)
    test_accuracy_curve: list[tuple[int, float]] = field(default_factory=list)
    train_loss: float = 0.0
    train_accuracy: float = 0.0
    test_loss: float = 0.0
    test_accuracy: float = 0.0
    microseconds_per_step: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "optimizer": self.name,
            "settings": self.settings,
            "steps": self.steps,
            "train_loss": self.train_loss,
            "train_accuracy": self.train_accuracy,
            "test_loss": self.test_loss,
            "test_accuracy": self.test_accuracy,
            "microseconds_per_optimizer_step": self.microseconds_per_step,
            "train_losses": self.train_losses,
            "test_accuracy_curve": self.test_accuracy_curve,
        }


def train(
    contender: Contender,
    steps: int,
    random_seed: int,
    on_step: Callable[[int], None] | None = None,
) -> Run:
    """Train a fresh network for ``steps`` minibatch steps, in the same data order for all."""
    images, labels = load_digits()
    train_rows, test_rows = split(labels, random_seed)
    x_train, y_train = images[train_rows], labels[train_rows]
    x_test, y_test = images[test_rows], labels[test_rows]
    model = MLP(random_seed)
    optimizer = contender.make(model.params)
    rng = np.random.default_rng(random_seed + 1)
    run = Run(contender.name, contender.settings, steps)
    order: npt.NDArray[np.int64] = np.empty(0, dtype=np.int64)
    optimizer_seconds = []
    for step in range(1, steps + 1):
        if len(order) < BATCH:
            order = rng.permutation(len(y_train))
        batch, order = order[:BATCH], order[BATCH:]
        loss, grads = model.loss_and_gradients(x_train[batch], y_train[batch])
        started = time.perf_counter()
        optimizer.step(grads)
        optimizer_seconds.append(time.perf_counter() - started)
        run.train_losses.append(loss)
        if step % EVALUATE_EVERY == 0 or step == steps:
            run.test_accuracy_curve.append((step, model.evaluate(x_test, y_test)[1]))
        if on_step is not None:
            on_step(step)
    run.train_loss, run.train_accuracy = model.evaluate(x_train, y_train)
    run.test_loss, run.test_accuracy = model.evaluate(x_test, y_test)
    # The median: one-time costs (loading compiled kernels) are not the cost of a step.
    run.microseconds_per_step = statistics.median(optimizer_seconds) * 1e6
    return run
