"""The Triton kernel: under Triton's interpreter on CPU tensors, and compiled ahead of time.

conftest.py sets TRITON_INTERPRET=1 before anything imports Triton, so the kernel
runs here on CPU tensors. The interpreter is not the compiler (it has exact
division and square root and never fuses multiply-adds); the ahead-of-time tests
compile for sm_80 and sm_90 and read the machine code for what the interpreter
cannot show. benchmarks/gpu_check.py repeats the comparisons on a GPU.
"""

import importlib
import inspect
import itertools
import json
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton", reason="Triton is not installed")

import rmsprop.torch  # noqa: E402
from rmsprop import Hyperparameters, _accel, _rule, _rule_to_triton, _triton  # noqa: E402
from rmsprop.torch._backends import backend, kernel_can_update  # noqa: E402
from rmsprop.torch._foreach import foreach_update  # noqa: E402
from rmsprop.torch._plan import Plan  # noqa: E402

from tensors import assert_identical  # noqa: E402

# Large blocks: the interpreter runs a program's block as one NumPy operation.
SMALL = {"chunk": 2048, "block": 1024}
FLAGS = ("maximize", "centered", "eps_in_sqrt", "nesterov", "lr_in_momentum",
         "decoupled_weight_decay", "momentum", "weight_decay")  # fmt: skip


#: RMSPROP_FULL_SWEEP=1 runs every option combination (192, both precisions) under the
#: interpreter; by default a covering set runs here (every option on and off, alone and
#: with all others), and benchmarks/gpu_check.py runs all of them on the device.
FULL_SWEEP = os.environ.get("RMSPROP_FULL_SWEEP") == "1"


def _options(values):
    options = dict(zip(FLAGS, values, strict=True))
    if options["nesterov"] and not options["momentum"]:
        return None
    options["momentum"] = 0.9 if options["momentum"] else 0.0
    options["weight_decay"] = 0.1 if options["weight_decay"] else 0.0
    return options


def every_option_combination():
    if FULL_SWEEP:
        rows = list(itertools.product((False, True), repeat=len(FLAGS)))
    else:
        n = len(FLAGS)
        rows = [(False,) * n, (True,) * n]
        rows += [tuple(i == k for i in range(n)) for k in range(n)]  # one option on
        rows += [tuple(i != k for i in range(n)) for k in range(n)]  # one option off
    for values in rows:
        options = _options(values)
        if options is not None:
            yield options


def members(sizes, p_dtype=torch.float32, s_dtype=torch.float32, seed=0):
    """(param, grad, [square_avg, momentum_buffer, grad_avg]) with special values and layouts.

    Every third tensor starts one element into its storage (not 16-byte aligned);
    a transposed 2-D group is dense without being contiguous.
    """
    generator = torch.Generator().manual_seed(seed)

    def make(n, offset, dtype, positive=False):
        x = torch.randn(n + offset, generator=generator, dtype=torch.float64)
        return (x.abs() * 0.1 if positive else x).to(dtype)[offset:]

    out = []
    for i, n in enumerate(sizes):
        offset = 1 if i % 3 == 2 else 0
        p, g = make(n, offset, p_dtype), make(n, offset, p_dtype)
        if n >= 6:
            g[:6] = torch.tensor([0.0, -0.0, float("inf"), float("nan"), 1e30, 1e-30])
            p[6 % n] = float("-inf")
        state = [
            make(n, offset, s_dtype, positive=True),
            make(n, offset, s_dtype),
            make(n, offset, s_dtype),
        ]
        out.append((p, g, state))
    p, g = (torch.randn(37, 19, generator=generator).to(p_dtype).t() for _ in range(2))
    out.append((p, g, [torch.rand(37, 19, generator=generator).to(s_dtype).t() for _ in range(3)]))
    return out


def copies(group):
    return [(p.clone(), g.clone(), [b.clone() for b in bs]) for p, g, bs in group]


def run_both(hp, group, float32_arithmetic=False, correction=1.0, **kernel_options):
    """The kernel and the foreach path on copies of ``group``; both results."""
    ours, theirs = group, copies(group)
    with np.errstate(all="ignore"):  # the interpreter computes with NumPy
        _triton.update(
            ours, hp, float32_arithmetic=float32_arithmetic, correction=correction,
            **(kernel_options or SMALL),
        )  # fmt: skip
    work = torch.float32 if float32_arithmetic else torch.float64
    foreach_update(theirs, hp, work, correction)
    return ours, theirs


def test_the_kernels_rule_is_generated_from_the_rule():
    """rmsprop._triton_rule is what rmsprop._rule_to_triton writes from _rule.py now
    (run ``python -m rmsprop._rule_to_triton`` after changing the rule)."""
    assert _rule_to_triton.TARGET.read_text() == _rule_to_triton.generate()


def test_the_generator_refuses_what_it_cannot_translate(monkeypatch):
    """A rule reading something the kernel does not pass fails loudly, not silently."""
    source = inspect.getsource(_rule).replace("hp.lr, hp.beta", "hp.lr, hp.initial_cache")
    monkeypatch.setattr(_rule_to_triton.inspect, "getsource", lambda module: source)
    with pytest.raises(ValueError, match="initial_cache"):
        _rule_to_triton.generate()


@pytest.mark.parametrize("options", list(every_option_combination()), ids=str)
def test_every_option_combination_is_bit_identical_to_the_foreach_path(options):
    hp = Hyperparameters.from_preset("pytorch", **options)
    sizes = [0, 1, 3, 17, 1024, 2048 + 5, 5000]
    for float32_arithmetic in (False, True):
        ours, theirs = run_both(hp, members(sizes), float32_arithmetic)
        assert_identical(ours, theirs)


@pytest.mark.parametrize("centered", [False, True])
@pytest.mark.parametrize("eps_in_sqrt", [False, True])
def test_bias_correction_is_bit_identical_to_the_foreach_path(centered, eps_in_sqrt):
    hp = Hyperparameters.from_preset(
        "optax", lr=0.01, bias_correction=True, centered=centered, eps_in_sqrt=eps_in_sqrt
    )
    for float32_arithmetic in (False, True):
        ours, theirs = run_both(
            hp, members([1, 17, 3000]), float32_arithmetic, correction=hp.correction(3)
        )
        assert_identical(ours, theirs)


@pytest.mark.parametrize(
    ("p_dtype", "s_dtype"),
    [
        (torch.float64, torch.float64),
        (torch.float32, torch.float64),
        (torch.bfloat16, torch.float32),
        (torch.bfloat16, torch.bfloat16),
        (torch.float16, torch.float32),
        (torch.float16, torch.float16),
    ],
)
@pytest.mark.parametrize(
    "options",
    [{}, {"momentum": 0.9, "centered": True, "weight_decay": 0.1, "maximize": True}],
    ids=["plain", "everything"],
)
def test_every_storage_dtype_is_rounded_once_as_the_foreach_path_rounds(p_dtype, s_dtype, options):
    hp = Hyperparameters.from_preset("pytorch", **options)
    ours, theirs = run_both(hp, members([0, 1, 17, 3000, 4099], p_dtype, s_dtype))
    assert_identical(ours, theirs)
    if torch.float64 not in (p_dtype, s_dtype):  # float32 registers: 16-bit storage too
        ours, theirs = run_both(hp, members([17, 3000], p_dtype, s_dtype), True)
        assert_identical(ours, theirs)


def test_gradients_of_another_dtype_than_the_parameters():
    hp = Hyperparameters.from_preset("pytorch", momentum=0.9)
    group = members([100, 5000])
    group = [(p, g.double(), bs) for p, g, bs in group]
    ours, theirs = run_both(hp, group)
    assert_identical(ours, theirs)


def test_bfloat16_rounds_to_nearest_even_where_the_interpreter_would_truncate():
    """bfloat16 results are rounded to nearest even, as torch rounds, not truncated."""
    hp = Hyperparameters(lr=0.0, beta=0.0)  # cache = g * g, rounded once to bfloat16
    g = torch.randn(1000, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    p, v = torch.zeros(1000, dtype=torch.bfloat16), torch.zeros(1000, dtype=torch.bfloat16)
    with np.errstate(all="ignore"):
        _triton.update([(p, g, [v, None, None])], hp, **SMALL)
    square = (g.double() * g.double()).float()
    truncated = (square.view(torch.int32) >> 16).to(torch.int16).view(torch.bfloat16)
    assert torch.equal(v, square.to(torch.bfloat16))
    assert not torch.equal(v, truncated)  # the case above has teeth


@pytest.fixture
def kernel_calls(monkeypatch):
    """CPU tensors go to the Triton kernel (not to Numba), under its interpreter; the
    list its launches are counted in."""
    calls = []  # the number of gradients of each launch
    launch = _triton.Launch.__call__
    monkeypatch.setattr(
        _triton.Launch, "__call__", lambda self, g, *a: calls.append(len(g)) or launch(self, g, *a)
    )
    monkeypatch.setattr(rmsprop._dispatch, "GPU_DEVICE_TYPES", ("cpu",))
    previous = _accel.set_enabled(False)
    yield calls
    _accel.set_enabled(previous)


def test_the_optimizer_sends_dense_tensors_to_the_kernel(kernel_calls):
    """rmsprop.torch.RMSProp with the kernel equals itself on the foreach path, bit for bit."""
    results = []
    for enabled in (True, False):
        was = _accel.set_triton_enabled(enabled)
        torch.manual_seed(0)
        net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 5 * 5, 2)
        ).to(memory_format=torch.channels_last)
        frozen = net[2].bias
        opt = rmsprop.torch.RMSProp(
            [{"params": [net[0].weight, net[0].bias], "momentum": 0.9},
             {"params": [net[2].weight, frozen], "centered": True}],
            preset="pytorch", lr=1e-2,
        )  # fmt: skip
        x, y = torch.randn(8, 3, 7, 7).to(memory_format=torch.channels_last), torch.randn(8, 2)
        with np.errstate(all="ignore"):
            for step in range(5):
                opt.zero_grad()
                torch.nn.functional.mse_loss(net(x), y).backward()
                if step == 2:
                    frozen.grad = None  # a parameter without a gradient this step
                opt.step()
        results.append([p.detach().clone() for p in net.parameters()])
        _accel.set_triton_enabled(was)
    assert net[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert len(kernel_calls) == 10  # two groups, five steps, kernel on
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


def test_a_flattened_group_is_one_launch_over_spans(kernel_calls):
    """A group flattened by flatten_ is stepped as one member spanning each flat buffer
    (rmsprop.torch._spans), padding included: the foreach path's numbers, bit for bit."""
    results = []
    for triton_on in (True, False):
        was = _accel.set_triton_enabled(triton_on)
        torch.manual_seed(0)
        net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 5 * 5, 3)
        )
        rmsprop.torch.flatten_(net)
        opt = rmsprop.torch.RMSProp(net.parameters(), lr=1e-2, momentum=0.9, centered=True)
        x, y = torch.randn(8, 3, 7, 7), torch.randn(8, 3)
        with np.errstate(all="ignore"):
            for _ in range(3):
                opt.zero_grad()
                torch.nn.functional.mse_loss(net(x), y).backward()
                opt.step()
        results.append([p.detach().clone() for p in net.parameters()])
        _accel.set_triton_enabled(was)
    assert kernel_calls == [1, 1, 1]
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


def test_stepping_inside_backward_equals_group_steps_on_the_kernel(kernel_calls):
    """step_in_backward=True through the Triton kernel (one launch per parameter, from
    its hook) equals ordinary group steps through it, bit for bit."""
    results = []
    for in_backward in (False, True):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
        opt = rmsprop.torch.RMSProp(
            net.parameters(), lr=1e-2, momentum=0.9, centered=True,
            step_in_backward=in_backward,
        )  # fmt: skip
        x, y = torch.randn(4, 6), torch.randn(4, 2)
        with np.errstate(all="ignore"):
            for _ in range(4):
                opt.zero_grad()
                torch.nn.functional.mse_loss(net(x), y).backward()
                opt.step()
        results.append([p.detach().clone() for p in net.parameters()])
    assert len(kernel_calls) == 4 + 4 * 4  # a launch per group step, then one per parameter
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


def test_what_the_kernel_does_not_take_goes_the_foreach_way():
    can = kernel_can_update
    dtypes = _triton.DTYPES
    p, g = torch.zeros(4, 6), torch.zeros(4, 6)
    state = [torch.zeros(4, 6), None, None]
    assert can(dtypes, p, g, state)
    assert can(dtypes, p.t(), g.t(), [state[0].t(), None, None])  # transposed, dense
    assert not can(dtypes, p.t(), g, [state[0].t(), None, None])  # layouts differ
    assert not can(dtypes, p[:, ::2], g[:, ::2], [state[0][:, ::2], None, None])  # gaps
    assert not can(dtypes, p, g, [torch.zeros(24), None, None])  # state of another shape
    assert not can(dtypes, p, g, [torch.zeros(4, 6), torch.zeros(4, 6, dtype=torch.float64), None])
    assert not can(dtypes, p.to(torch.int32), g, state)
    assert not can(dtypes, p, g, [None, None, None])


def test_a_kernel_that_fails_turns_itself_off_once_and_the_step_still_happens(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no kernel image is available for execution on the device")

    monkeypatch.setattr(_triton.Launch, "__call__", broken)
    monkeypatch.setattr(rmsprop._dispatch, "GPU_DEVICE_TYPES", ("cpu",))
    previous, was = _accel.set_enabled(False), _accel.set_triton_enabled(True)
    try:
        w = torch.nn.Parameter(torch.ones(3))
        opt = rmsprop.torch.RMSProp([w], lr=0.1)
        w.grad = torch.full((3,), 0.1)
        with pytest.warns(RuntimeWarning, match="no kernel image"):
            opt.step()
        assert not _accel._triton_enabled
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            w.grad = torch.full((3,), 0.1)
            opt.step()  # no second warning
    finally:
        _accel.set_enabled(previous)
        _accel.set_triton_enabled(was)
    assert torch.all(w < 1.0)


def test_a_new_learning_rate_is_data_not_code():
    """Hyperparameter values travel in a tensor; only options select a kernel."""
    a = Hyperparameters.from_preset("pytorch", lr=0.1)
    b = Hyperparameters.from_preset("pytorch", lr=0.2, beta=0.5, eps=1e-3)
    device = torch.device("cpu")
    assert not torch.equal(
        _triton._hyper(a, 1.0, device, 0, None), _triton._hyper(b, 1.0, device, 0, None)
    )
    assert not torch.equal(
        _triton._hyper(a, 1.0, device, 0, None), _triton._hyper(a, 0.19, device, 0, None)
    )
    assert _triton._options(a) == _triton._options(b)


def test_a_launch_is_kept_and_only_moved_gradients_are_uploaded_again():
    group = members([10, 0])
    hp = Hyperparameters.from_preset("pytorch")
    _triton._launches.clear()
    with np.errstate(all="ignore"):
        _triton.update(group, hp, **SMALL)
        _triton.update(group, hp.replace(lr=0.5), **SMALL)
        (launch,) = _triton._launches.values()
        assert launch.grid == (2, 1, 1)  # the 10 elements and the transposed 37 x 19 tensor
        assert len(launch._addresses) == 1
        moved = [(p, g.clone(), bs) for p, g, bs in group]
        _triton.update(moved, hp, **SMALL)
    assert len(_triton._launches) == 1 and len(launch._addresses) == 2


# --- compiled ahead of time, as for an A100 (sm_80) and an H100 (sm_90a) ---------------------
# In a child process: the kernels of this process are interpreted ones.

AOT_SCRIPT = r"""
import json, subprocess, sys, tempfile
from pathlib import Path
import triton, triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.backends.nvidia.compiler import get_ptxas
from triton.compiler import ASTSource
from rmsprop import _triton

cases = {
    "seed rule, float32, float64 arithmetic": {},
    "everything, float32": {"MOMENTUM": True, "NESTEROV": True, "CENTERED": True,
                            "DECAY": True, "MAXIMIZE": True, "EPS_IN_SQRT": True},
    "bfloat16 with float32 state": {"P": tl.uint16, "G": tl.uint16, "MOMENTUM": True,
                                    "CENTERED": True},
    "float32 arithmetic": {"WORK": tl.float32, "MOMENTUM": True, "CENTERED": True},
    "float64 data": {"P": tl.float64, "G": tl.float64, "S": tl.float64, "MOMENTUM": True},
    "unaligned": {"ALIGNED": False},
    "torch's order, float32": {"ORDER": 1, "FUSED": True, "WORK": tl.float32,
                               "MOMENTUM": True, "CENTERED": True, "DECAY": True},
    "torch's order, float64": {"ORDER": 1, "FUSED": True, "P": tl.float64, "G": tl.float64,
                               "S": tl.float64, "CENTERED": True, "SMALL_WEIGHT": True,
                               "DECAY": True},
    "bfloat16 state rounded stochastically": {"S": tl.uint16, "MOMENTUM": True,
                                              "CENTERED": True, "STOCHASTIC": True},
    "8-bit blockwise state": {"S": tl.uint8, "MOMENTUM": True, "CENTERED": True,
                              "STOCHASTIC": True, "BLOCKWISE": True,
                              "BLOCK_SIZE": _triton.BLOCKWISE_BLOCK},
}
kernel = _triton._family_kernel
pointers = {"addresses": "*i64", "sizes": "*i64", "chunks": "*i64", "hyper": "*fp64"}
signature = {name: pointers.get(name, "constexpr") for name in kernel.arg_names}
out = {}
for name, constants in cases.items():
    values = {
        "P": tl.float32, "G": tl.float32, "S": tl.float32, "WORK": tl.float64,
        "MAXIMIZE": False, "CENTERED": False, "EPS_IN_SQRT": False, "NESTEROV": False,
        "LR_IN_MOMENTUM": False, "DECOUPLED": False, "MOMENTUM": False, "DECAY": False,
        "BIAS_CORRECTION": False, "ORDER": 0, "SMALL_WEIGHT": False, "FUSED": False,
        "ALIGNED": True, "CHUNK_SIZE": _triton.CHUNK, "BLOCK_SIZE": _triton.BLOCK,
        "STOCHASTIC": False, "BLOCKWISE": False,
    } | constants
    attrs = {(i,): [["tt.divisibility", 16]] for i in range(4)}
    for arch in (80, 90):
        source = ASTSource(kernel, signature, constexprs=values, attrs=attrs)
        warps = _triton.BLOCKWISE_WARPS if values["BLOCKWISE"] else _triton.WARPS
        options = {"num_warps": warps, "enable_fp_fusion": False}
        ptx = triton.compile(source, target=GPUTarget("cuda", arch, 32), options=options).asm["ptx"]
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "kernel.ptx"
            path.write_text(ptx)
            target = f"sm_{arch}" + ("a" if arch == 90 else "")
            done = subprocess.run([get_ptxas(arch).path, f"-arch={target}", "-v", str(path),
                                   "-o", "/dev/null"], capture_output=True, text=True, check=True)
        work = "f32" if values["WORK"] == tl.float32 else "f64"
        out[f"{name}, sm_{arch}"] = {"ptx": ptx, "ptxas": done.stdout + done.stderr,
                                     "work": work, "aligned": values["ALIGNED"],
                                     "fused": values["FUSED"]}
json.dump(out, sys.stdout)
"""


@pytest.fixture(scope="module")
def compiled():
    pytest.importorskip("triton.backends.nvidia.compiler")
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    done = subprocess.run(
        [sys.executable, "-c", AOT_SCRIPT],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


AOT_CASES = [f"{case}, sm_{arch}" for case in (
    "seed rule, float32, float64 arithmetic", "everything, float32", "bfloat16 with float32 state",
    "float32 arithmetic", "float64 data", "unaligned", "torch's order, float32",
    "torch's order, float64", "bfloat16 state rounded stochastically", "8-bit blockwise state")
    for arch in (80, 90)]  # fmt: skip


@pytest.mark.parametrize("case", AOT_CASES)
def test_compiled_kernel_is_exact_vectorized_and_does_not_spill(compiled, case):
    found = compiled[case]
    ptx, width = found["ptx"], found["work"]
    assert re.search(rf"div\.rn\.{width}", ptx), "division must be correctly rounded"
    assert re.search(rf"sqrt\.rn\.{width}", ptx), "square root must be correctly rounded"
    assert not re.search(r"\b(div|sqrt|rcp|rsqrt)\.approx", ptx)
    if found["fused"]:  # torch's order: the multiply-adds that CUDA's torch fuses
        assert re.search(rf"\bfma\.rn\.{width}", ptx), "torch's fused multiply-adds"
    else:
        assert not re.search(r"\bfma\.", ptx), "no contracted multiply-adds"
    # 16-byte loads: four 32-bit or two 64-bit values.
    loads = re.findall(r"ld\.global(?:\.[a-z]+)*\.(?:v4\.[bfu]32|v2\.[bfu]64)", ptx)
    if found["aligned"]:
        assert loads, "aligned chunks load 16 bytes at a time"
    else:
        assert not loads, "unaligned tensors must not be told they are aligned"
    report = found["ptxas"]
    assert "0 bytes spill stores" in report and "0 bytes spill loads" in report, report


def test_compiled_kernels_are_launched_directly_with_every_argument_in_order(monkeypatch):
    """After the first launch, the compiled kernel's launcher gets a 3-D grid and every
    argument of the kernel, constants included, in the order of its signature."""
    launches = []

    class Compiled:
        def __getitem__(self, grid):
            return lambda *args: launches.append((grid, args))

    group = members([10])
    hp = Hyperparameters.from_preset("pytorch")
    monkeypatch.setattr(_triton, "_remember", lambda cache, key, value: None)
    monkeypatch.setattr(_triton._compiled, "get", lambda key: Compiled())
    _triton.update(group, hp, **SMALL)
    ((grid, args),) = launches
    assert grid == (2, 1, 1)
    assert len(args) == len(_triton._family_kernel.arg_names)
    # not stochastic, not 8-bit, neither parameters nor state rounded stochastically
    assert args[-6:] == (SMALL["chunk"], SMALL["block"], False, False, False, False)


def test_a_triton_whose_launcher_differs_falls_back_to_the_jit(monkeypatch):
    class Refusing:
        def __getitem__(self, grid):
            def launch(*args):
                raise IndexError("tuple index out of range")

            return launch

    monkeypatch.setattr(_triton, "FAST_LAUNCH", True)
    monkeypatch.setattr(_triton._compiled, "get", lambda key: Refusing())
    group, expected = members([10, 3000]), None
    expected = copies(group)
    hp = Hyperparameters.from_preset("pytorch", momentum=0.9)
    with pytest.warns(RuntimeWarning, match="directly failed"), np.errstate(all="ignore"):
        _triton.update(group, hp, **SMALL)
    assert not _triton.FAST_LAUNCH
    foreach_update(expected, hp, torch.float64, 1.0)
    assert_identical(group, expected)  # applied once, by the JIT launch


def scenario(change, triton_on, runs):
    """Four steps of a small channels_last CNN; ``change`` applied before the third."""
    was = _accel.set_triton_enabled(triton_on)
    try:
        torch.manual_seed(0)
        net = torch.nn.Sequential(
            torch.nn.Conv2d(2, 3, 3), torch.nn.Flatten(), torch.nn.Linear(3 * 3 * 3, 2)
        ).to(memory_format=torch.channels_last)
        momentum = {"momentum": 0.9} if change != "options" else {}
        opt = rmsprop.torch.RMSProp(net.parameters(), preset="pytorch", lr=1e-2, **momentum)
        schedule = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
        x, y = torch.randn(4, 2, 5, 5).to(memory_format=torch.channels_last), torch.randn(4, 2)
        weight = net[0].weight
        with np.errstate(all="ignore"):
            for step in range(4):
                opt.zero_grad()
                torch.nn.functional.mse_loss(net(x), y).backward()
                if step == 2:
                    if change == "state replaced":
                        opt.state[weight]["square_avg"] = opt.state[weight]["square_avg"].clone()
                    elif change == "param data replaced":
                        weight.data = weight.data.clone(memory_format=torch.channels_last)
                    elif change == "gradient of another layout":
                        weight.grad = weight.grad.contiguous()
                    elif change == "no gradient":
                        net[2].bias.grad = None
                    elif change == "options":
                        opt.param_groups[0]["momentum"] = 0.5
                before = len(runs)
                opt.step()
                schedule.step()
                built = len(runs) > before
                # Step 0 builds a plan, step 1 reuses it; a change makes step 2 build anew;
                # step 3 reuses step 2's plan, except after a step that had to leave the
                # kernel (a gradient of another layout) or that lacked a gradient.
                transient = change in ("gradient of another layout", "no gradient")
                expected = {0: True, 1: False, 2: change != "nothing", 3: transient}
                if triton_on:
                    assert built == expected[step], (step, change)
        return [p.detach().clone() for p in net.parameters()]
    finally:
        _accel.set_triton_enabled(was)


@pytest.mark.parametrize(
    "change",
    ["nothing", "state replaced", "param data replaced", "gradient of another layout",
     "no gradient", "options"],
)  # fmt: skip
def test_a_group_plan_is_reused_until_what_it_rests_on_changes(change, monkeypatch):
    """A group's launches are built once (its plan) and reused while its tensors stay as
    they were; any change builds them anew, or sends the step down the general path, and
    the numbers are those of the foreach path throughout."""
    runs = []
    build = Plan.build
    monkeypatch.setattr(Plan, "build", lambda *a: runs.append(1) or build(*a))
    monkeypatch.setattr(rmsprop._dispatch, "GPU_DEVICE_TYPES", ("cpu",))
    previous = _accel.set_enabled(False)
    try:
        ours = scenario(change, True, runs)
        theirs = scenario(change, False, runs)
    finally:
        _accel.set_enabled(previous)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)


def test_a_state_of_the_wrong_size_is_refused_not_written_past(monkeypatch):
    monkeypatch.setattr(rmsprop._dispatch, "GPU_DEVICE_TYPES", ("cpu",))
    previous = _accel.set_enabled(False)
    try:
        w = torch.nn.Parameter(torch.ones(4, 6))
        opt = rmsprop.torch.RMSProp([w], lr=0.1)
        for _ in range(2):
            w.grad = torch.ones(4, 6)
            with np.errstate(all="ignore"):
                opt.step()
        opt.state[w]["square_avg"] = torch.zeros(24)
        with pytest.raises(RuntimeError):
            opt.step()
    finally:
        _accel.set_enabled(previous)


TORCH_FLAGS = ("maximize", "centered", "momentum", "weight_decay")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("foreach", [True, False])
def test_torchs_order_computes_torchs_rmsprop(foreach, dtype):
    """The kernel in torch's CUDA order, every option combination and both lerp_
    formulas, against torch's functional RMSprop on the CPU for three steps. The
    interpreter rounds each product (the GPU fuses): agreement here is to a few
    units in the last place at the tensors' scale; bit identity with torch on CUDA is
    what the first-use check (rmsprop._torch_probe) establishes on the device, and
    benchmarks/gpu_check.py reports."""
    functional = importlib.import_module("torch.optim.rmsprop").rmsprop
    limit = 8 * torch.finfo(dtype).eps
    for values in itertools.product((False, True), repeat=len(TORCH_FLAGS) + 1):
        maximize, centered, momentum, decay, small_weight = values
        hp = Hyperparameters.from_preset(
            "pytorch", lr=1e-2, beta=0.7 if small_weight else 0.99, maximize=maximize,
            centered=centered, momentum=0.9 * momentum, weight_decay=0.1 * decay,
        )  # fmt: skip
        generator = torch.Generator().manual_seed(1)
        sizes = (1, 1000, 2100)
        start = [
            [torch.randn(n, generator=generator, dtype=dtype) for _ in range(2)]
            + [torch.rand(n, generator=generator, dtype=dtype) * 0.1]
            + [torch.randn(n, generator=generator, dtype=dtype) * 0.01 for _ in range(2)]
            for n in sizes
        ]
        ours = [[t.clone() for t in tensors] for tensors in start]
        theirs = [[t.clone() for t in tensors] for tensors in start]
        steps = [torch.zeros(()) for _ in sizes]
        for _ in range(3):
            grads = [torch.randn(n, generator=generator, dtype=dtype) for n in sizes]
            with np.errstate(invalid="ignore"):  # a negative centered variance: NaN, as torch
                _triton.update(
                    [(p, g, [v, b, a]) for (p, _, v, b, a), g in zip(ours, grads, strict=True)],
                    hp, order=_triton.TORCH, **SMALL,
                )  # fmt: skip
            functional(
                [t[0] for t in theirs], [g.clone() for g in grads], [t[2] for t in theirs],
                [t[4] for t in theirs] if centered else [],
                [t[3] for t in theirs] if momentum else [], steps,
                foreach=foreach, maximize=maximize, lr=hp.lr,
                alpha=hp.beta, eps=hp.eps, weight_decay=hp.weight_decay,
                momentum=hp.momentum, centered=centered,
            )  # fmt: skip
        for mine, reference in zip(ours, theirs, strict=True):
            for index in (0, 2, 3, 4):  # the terms of a momentum buffer are about 1
                scale = max(reference[index].abs().nan_to_num().max().item(), float(index == 3))
                assert torch.equal(mine[index].isnan(), reference[index].isnan())
                difference = (mine[index] - reference[index]).abs().nan_to_num().max()
                assert difference <= limit * scale, (values, index)


def test_torchs_order_is_used_on_cuda_tensors_only():
    """rmsprop.torch takes torch's order from the Triton kernel for CUDA tensors, where
    matches_torch confirmed it; CPU tensors get the CPU backend or torch's functional."""
    hp = Hyperparameters.from_preset("pytorch")
    p = torch.zeros(3)
    found = backend("cpu", "pytorch", 3)
    assert found is None or "triton" not in found.name
    chosen = backend("cuda", "pytorch", 3)
    assert chosen is not None and chosen.name == "triton, torch's order"
    assert not chosen.takes(p, p.clone(), [p.clone(), None, None], hp)
