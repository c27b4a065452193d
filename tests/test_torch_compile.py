"""torch.compile around the optimizer step: with the fused kernels loaded or not.

``RMSProp.step`` is opaque to Dynamo (``torch.compiler.disable``): a compiled
``opt.step`` or a compiled training step that calls it runs the step as eager code
does (the kernels on the CPU, Triton on CUDA), with the same numbers, and never
makes Dynamo recompile for it.
"""

import pytest

torch = pytest.importorskip("torch")

import rmsprop.torch  # noqa: E402
from rmsprop import _accel  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"
)


def make(optimizer_class, **options):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(40, 300), torch.nn.Tanh(), torch.nn.Linear(300, 3))
    return net, optimizer_class(net.parameters(), **options)


def data(steps=4):
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 40, generator=generator), torch.randn(8, 3, generator=generator))
            for _ in range(steps)]  # fmt: skip


def loss(net, x, y):
    return torch.nn.functional.mse_loss(net(x), y)


def run_eager(optimizer_class, **options):
    net, opt = make(optimizer_class, **options)
    for x, y in data():
        opt.zero_grad()
        loss(net, x, y).backward()
        opt.step()
    return [p.detach().clone() for p in net.parameters()]


def assert_equal(a, b):
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)


OPTIMIZERS = [
    (rmsprop.torch.RMSProp, {"preset": "pytorch", "lr": 1e-2, "momentum": 0.9, "centered": True}),
    (rmsprop.torch.RMSprop, {"lr": 1e-2, "alpha": 0.9, "weight_decay": 0.01}),
]


@pytest.mark.parametrize("kernels", [True, False], ids=["kernels", "no-kernels"])
@pytest.mark.parametrize(("optimizer_class", "options"), OPTIMIZERS, ids=["RMSProp", "RMSprop"])
def test_compiled_step_equals_eager_without_recompiling(kernels, optimizer_class, options):
    previous = _accel.set_enabled(kernels)
    try:
        if kernels:
            assert _accel.load() is not None
        expected = run_eager(optimizer_class, **options)
        torch._dynamo.reset()
        net, opt = make(optimizer_class, **options)
        step = torch.compile(opt.step)
        with torch._dynamo.config.patch(error_on_recompile=True):
            for x, y in data():
                opt.zero_grad()
                loss(net, x, y).backward()
                step()
    finally:
        _accel.set_enabled(previous)
    assert_equal([p.detach() for p in net.parameters()], expected)


def test_a_compiled_training_step_that_calls_step_equals_eager():
    """Dynamo runs the step between two graphs; "aot_eager" keeps the forward and backward
    of eager's numbers (inductor's fused kernels round their own way)."""
    expected = run_eager(rmsprop.torch.RMSProp, preset="pytorch", lr=1e-2, momentum=0.9)
    torch._dynamo.reset()
    net, opt = make(rmsprop.torch.RMSProp, preset="pytorch", lr=1e-2, momentum=0.9)

    @torch.compile(backend="aot_eager")
    def train_step(x, y):
        opt.zero_grad()
        loss(net, x, y).backward()
        opt.step()

    with torch._dynamo.config.patch(error_on_recompile=True):
        for x, y in data():
            train_step(x, y)
    assert_equal([p.detach() for p in net.parameters()], expected)
