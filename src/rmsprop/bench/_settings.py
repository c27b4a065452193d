"""The settings and names every part of ``rmsprop bench`` shares."""

from collections.abc import Callable

LR, BETA, EPS = 1e-3, 0.9, 1e-8
SIZES = (10**3, 10**4, 10**5, 10**6, 10**7, 5 * 10**7)
QUICK_SIZES = (10**3, 10**5, 10**6)
DTYPES = ("float32", "float64")
SAMPLE_SECONDS = 0.02
#: Idle time before each sample, untimed: OpenMP threads of the sample before (Numba's,
#: torch's) spin on the cores a while after their loop, and slowed the next sample by up
#: to 25% (measured on XLA's threads) without it; rounds also rotate the order.
PAUSE = 0.01
ROOFLINE = "roofline: 5-stream loop"
FAST_NUMPY = "rmsprop.RMSProp, float32 arithmetic"
FAST_TORCH = "rmsprop.torch.RMSProp, float32 arithmetic"
OURS_OPTAX = "rmsprop.optax.rmsprop (jit, donated)"
#: rmsprop.torch.RMSprop: torch.optim.RMSprop's numbers bit for bit.
EXACT_TORCH = "rmsprop.torch.RMSprop (torch's rounding)"
OURS = (
    "rmsprop.step_", "rmsprop.RMSProp", "rmsprop.torch.RMSProp", FAST_NUMPY, FAST_TORCH,
    OURS_OPTAX, EXACT_TORCH,
)  # fmt: skip

Step = Callable[[], object]
Factory = Callable[[int, str], Step]

OPTAX = "optax.rmsprop (jit, donated)"
