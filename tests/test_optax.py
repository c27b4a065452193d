"""rmsprop.optax: the family as an optax transformation, against optax.rmsprop and
rmsprop.RMSProp, under jit, with optax's combinators, sharded."""

import io
import itertools
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
jnp = jax.numpy

import rmsprop  # noqa: E402
import rmsprop.optax  # noqa: E402

from frameworks import max_relative_difference  # noqa: E402

STEPS = 50
#: float64 agreement with optax.rmsprop (both compiled by XLA).
EXACT = 1e-15
#: float64 agreement with rmsprop.RMSProp: XLA contracts a * b + c into fused multiply-adds
#: on the CPU (23% of float64 a * b + c differ from NumPy's, measured), NumPy does not.
#: Measured: 1.5e-15 after 50 steps with momentum, below 1e-15 otherwise.
CONTRACTED = 4e-15


def well_posed(grads, centered, bias_correction, initial_cache):
    """``grads``, the first made 0 where it would be ill-posed: centered and bias-corrected
    from a zero cache, the first variance is g**2 - g**2 = 0 in exact arithmetic, and each
    library's step is its own rounding error divided by sqrt(eps) (or NaN)."""
    if centered and bias_correction and initial_cache == 0.0:
        return [jax.tree.map(np.zeros_like, grads[0]), *grads[1:]]
    return grads


def pytree(seed=0, dtype=np.float64):
    """Parameters and STEPS gradients, as dicts of a matrix, a vector and a scalar."""
    rng = np.random.default_rng(seed)
    shapes = {"kernel": (5, 3), "bias": (3,), "scale": ()}

    def draw():
        return {k: rng.normal(size=s).astype(dtype) for k, s in shapes.items()}

    return draw(), [draw() for _ in range(STEPS)]


def run(transform, params, grads, jit=True):
    """``params`` after one update per gradient, and the final state."""
    params = jax.tree.map(jnp.asarray, params)
    state = transform.init(params)
    update = jax.jit(transform.update) if jit else transform.update
    for g in grads:
        updates, state = update(jax.tree.map(jnp.asarray, g), state, params)
        params = optax.apply_updates(params, updates)
    return params, state


def difference(a, b):
    return max(
        max_relative_difference(x, y)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


OPTAX_OPTIONS = [
    pytest.param(m, n, c, s, i, bc, id=f"m{m}-n{n:d}-c{c:d}-sqrt{s:d}-init{i}-bc{bc:d}")
    for m, n, c, s, i, bc in itertools.product(
        [None, 0.9], [False, True], [False, True], [True, False], [0.0, 1.0], [False, True]
    )
    if m or not n  # optax's nesterov needs momentum
]


@pytest.mark.parametrize(
    ("momentum", "nesterov", "centered", "eps_in_sqrt", "initial_scale", "bias_correction"),
    OPTAX_OPTIONS,
)
def test_the_optax_preset_is_optax_rmsprop(
    momentum, nesterov, centered, eps_in_sqrt, initial_scale, bias_correction
):
    params, grads = pytree()
    grads = well_posed(grads, centered, bias_correction, initial_scale)
    switches = {"nesterov": nesterov, "centered": centered, "eps_in_sqrt": eps_in_sqrt}
    switches["bias_correction"] = bias_correction
    with jax.enable_x64(True):
        theirs, _ = run(
            optax.rmsprop(0.01, momentum=momentum, initial_scale=initial_scale, **switches),
            params,
            grads,
        )
        ours, _ = run(
            rmsprop.optax.rmsprop(
                0.01, preset="optax", momentum=momentum, initial_cache=initial_scale, **switches
            ),
            params,
            grads,
        )
    assert difference(ours, theirs) <= EXACT


PRESET_OPTIONS = [
    {},
    {"momentum": 0.9},
    {"momentum": 0.9, "centered": True, "weight_decay": 0.01},
    {"weight_decay": 0.01, "decoupled_weight_decay": True, "maximize": True},
    {"momentum": 0.5, "nesterov": True, "bias_correction": True, "eps_in_sqrt": False},
]


@pytest.mark.parametrize("options", PRESET_OPTIONS, ids=str)
@pytest.mark.parametrize("preset", ["pytorch", "tensorflow", "keras", "timm", None])
def test_every_preset_equals_the_numpy_optimizer(preset, options):
    params, grads = pytree(1)
    ours_np = {k: v.copy() for k, v in params.items()}
    optimizer = rmsprop.RMSProp(list(ours_np.values()), preset=preset, lr=0.01, **options)
    for g in grads:
        optimizer.step([g[k] for k in ours_np])
    with jax.enable_x64(True):
        ours_jax, state = run(rmsprop.optax.rmsprop(0.01, preset=preset, **options), params, grads)
    assert difference(ours_jax, ours_np) <= CONTRACTED
    saved = optimizer.state_dict()["state"]
    for i, key in enumerate(ours_np):
        assert max_relative_difference(state.cache[key], saved[i]["cache"]) <= CONTRACTED
    assert int(state.count) == STEPS


@pytest.mark.parametrize("options", PRESET_OPTIONS, ids=str)
def test_float32_is_within_a_few_ulp_of_float64(options):
    params, grads = pytree(2)
    transform = rmsprop.optax.rmsprop(0.01, preset="pytorch", **options)
    single = [jax.tree.map(lambda x: x.astype(np.float32), g) for g in grads[:10]]
    ours, _ = run(transform, jax.tree.map(lambda x: x.astype(np.float32), params), single)
    with jax.enable_x64(True):
        wide, _ = run(transform, params, [jax.tree.map(np.float64, g) for g in single])
    for key in params:  # in float32 ulp of the leaf's largest value (measured: <= 4.6)
        assert ours[key].dtype == jnp.float32
        reference = np.asarray(wide[key])
        ulp = np.spacing(np.float32(np.abs(reference).max()))
        assert np.abs(np.asarray(ours[key], np.float64) - reference).max() <= 8 * ulp, key


def test_state_has_only_the_buffers_the_options_use_and_keeps_dtypes():
    params = {"w": jnp.ones(3, jnp.bfloat16)}
    plain = rmsprop.optax.rmsprop(0.1).init(params)
    assert plain.momentum_buffer is None and plain.grad_avg is None
    assert plain.count.dtype == jnp.int32 and plain.cache["w"].dtype == jnp.bfloat16
    transform = rmsprop.optax.rmsprop(
        0.1, momentum=0.9, centered=True, state_dtype=jnp.float32, preset="pytorch"
    )
    state = transform.init(params)
    for buffers in (state.cache, state.momentum_buffer, state.grad_avg):
        assert buffers["w"].dtype == jnp.float32
    updates, state = transform.update({"w": jnp.full(3, 0.5, jnp.bfloat16)}, state)
    assert updates["w"].dtype == jnp.bfloat16  # updates keep the gradients' dtype
    assert state.cache["w"].dtype == jnp.float32


@pytest.mark.parametrize("params", [{}, {"empty": jnp.zeros((0, 3))}, [jnp.ones(2), None]], ids=str)
def test_empty_trees_and_leaves(params):
    transform = rmsprop.optax.rmsprop(0.01, preset="pytorch", momentum=0.9, centered=True)
    state = transform.init(params)
    updates, state = jax.jit(transform.update)(params, state)
    assert jax.tree.structure(updates) == jax.tree.structure(params)
    assert int(state.count) == 1


def test_the_state_round_trips_through_its_leaves():
    transform = rmsprop.optax.rmsprop(0.01, preset="pytorch", momentum=0.9, centered=True)
    params, grads = pytree()
    _, state = run(transform, params, grads[:3])
    leaves, tree = jax.tree.flatten(state)
    buffer = io.BytesIO()
    np.savez(buffer, *[np.asarray(leaf) for leaf in leaves])
    buffer.seek(0)
    loaded = np.load(buffer)
    restored = jax.tree.unflatten(
        tree, [jnp.asarray(loaded[f"arr_{i}"]) for i in range(len(leaves))]
    )
    assert isinstance(restored, rmsprop.optax.RMSPropState)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored), strict=True):
        assert np.array_equal(a, b)


def test_jit_compiles_once_with_a_schedule():
    traces = []
    schedule = optax.cosine_decay_schedule(0.1, 100)
    transform = rmsprop.optax.rmsprop(
        schedule, preset="pytorch", momentum=0.9, bias_correction=True
    )
    params, grads = pytree(dtype=np.float32)

    @jax.jit
    def train_step(params, state, g):
        traces.append(1)
        updates, state = transform.update(g, state, params)
        return optax.apply_updates(params, updates), state

    state = transform.init(params)
    for g in grads[:5]:
        params, state = train_step(params, state, g)
    assert len(traces) == 1
    assert int(state.count) == 5


def test_inject_hyperparams_changes_the_learning_rate_without_recompiling():
    traces = []
    transform = optax.inject_hyperparams(rmsprop.optax.rmsprop)(
        learning_rate=0.1, preset="keras", momentum=0.9, weight_decay=0.01
    )
    params, grads = pytree(dtype=np.float32)
    state = transform.init(params)

    @jax.jit
    def train_step(params, state, g):
        traces.append(1)
        updates, state = transform.update(g, state, params)
        return optax.apply_updates(params, updates), state

    params, state = train_step(params, state, grads[0])
    state.hyperparams["learning_rate"] = jnp.asarray(0.0, jnp.float32)
    frozen, state = train_step(params, state, grads[1])
    assert len(traces) == 1
    # lr 0: only the (decoupled, lr-scaled) decay and the momentum of step 1 move the params.
    reference = rmsprop.optax.rmsprop(0.1, preset="keras", momentum=0.9, weight_decay=0.01)
    expected, _ = run(reference, pytree(dtype=np.float32)[0], grads[:1], jit=False)
    moved = difference(frozen, params)
    assert 0 < moved < difference(params, pytree(dtype=np.float32)[0])
    assert difference(params, expected) <= 1e-6


def test_with_optax_combinators():
    params, grads = pytree(dtype=np.float32)
    inner = rmsprop.optax.rmsprop(0.01, preset="pytorch", momentum=0.9)
    # chain with clipping equals clipping the gradients first.
    chained, _ = run(optax.chain(optax.clip(0.5), inner), params, grads[:5])
    clipped = [jax.tree.map(lambda x: jnp.clip(x, -0.5, 0.5), g) for g in grads[:5]]
    expected, _ = run(inner, params, clipped)
    assert difference(chained, expected) == 0
    # MultiSteps: every 2 gradients averaged into one step.
    multi, _ = run(optax.MultiSteps(inner, every_k_schedule=2), params, grads[:4])
    means = [jax.tree.map(lambda a, b: (a + b) / 2, grads[i], grads[i + 1]) for i in (0, 2)]
    expected, _ = run(inner, params, means)
    assert difference(multi, expected) <= 1e-6
    # apply_if_finite: a step with a NaN gradient is skipped.
    bad = jax.tree.map(lambda x: x * np.nan, grads[1])
    guarded, _ = run(optax.apply_if_finite(inner, 3), params, [grads[0], bad, grads[2]])
    expected, _ = run(inner, params, [grads[0], grads[2]])
    assert difference(guarded, expected) == 0
    # masked: the bias is left alone.
    mask = {"kernel": True, "bias": False, "scale": True}
    masked, _ = run(optax.masked(inner, mask), params, grads[:3])
    assert np.array_equal(masked["bias"], params["bias"] + sum(g["bias"] for g in grads[:3]))
    expected, _ = run(inner, params, grads[:3])
    assert np.array_equal(masked["kernel"], expected["kernel"])


def test_updates_of_another_shape_than_the_parameters_are_refused():
    transform = rmsprop.optax.rmsprop(0.1)
    state = transform.init({"w": jnp.ones(3)})
    with pytest.raises(ValueError, match=r"updates leaf 0 has shape \(4,\), its state \(3,\)"):
        jax.jit(transform.update)({"w": jnp.ones(4)}, state)


def test_weight_decay_needs_the_parameters():
    transform = rmsprop.optax.rmsprop(0.01, weight_decay=0.1)
    params = {"w": jnp.ones(2)}
    state = transform.init(params)
    with pytest.raises(ValueError, match=r"weight_decay needs the parameters"):
        transform.update(params, state)
    transform.update(params, state, params)  # given: fine


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"beta": 1.5}, ValueError, r"beta must be in \[0, 1\]"),
        ({"nesterov": True}, ValueError, r"nesterov=True needs momentum > 0"),
        ({"preset": "caffe"}, ValueError, r"preset must be one of"),
        ({"momentum": jnp.ones(2)}, ValueError, r"momentum must be a scalar"),
        ({"eps": lambda count: 1e-8}, TypeError, r"only learning_rate may be a schedule"),
        ({"state_dtype": jnp.int32}, TypeError, r"state_dtype must be a floating dtype"),
        ({"centered": 1}, TypeError, r"centered must be True or False"),
    ],
)
def test_bad_options_are_refused_when_the_transformation_is_made(options, error, match):
    with pytest.raises(error, match=match):
        rmsprop.optax.rmsprop(0.01, **options)


def fusions(transform, params):
    """The fusions of the compiled update, and its entry computation's text."""
    state = transform.init(params)
    hlo = jax.jit(transform.update).lower(params, state).compile().as_text()
    entry = hlo[hlo.index("ENTRY") :]
    return [line for line in entry.splitlines() if " fusion(" in line], entry


def test_each_leaf_is_updated_in_as_few_passes_as_by_optax_rmsprop():
    """XLA fuses each leaf's arithmetic into loops: as many as for optax.rmsprop.

    XLA on the CPU does not fuse loops with several outputs: the new average is one
    loop (it is an output), the update a second that reads it back, for optax.rmsprop
    as for this transformation; the one more fusion is the step count (a scalar).
    """
    params = {"a": jnp.ones((256, 64)), "b": jnp.ones(1000), "c": jnp.ones((3, 3, 8, 8))}
    ours, entry = fusions(rmsprop.optax.rmsprop(0.01), params)
    theirs, _ = fusions(optax.rmsprop(0.01), params)
    assert len(ours) == len(theirs) + 1, "\n".join(ours)
    assert sum(line.lstrip().startswith("%add_select_fusion") for line in ours) == 1
    for op in ("divide(", "sqrt(", "rsqrt(", "multiply(", "subtract("):  # all inside fusions
        assert op not in entry, op


def test_sharded_parameters_keep_their_sharding():
    """Two host devices (a subprocess: XLA_FLAGS must be set before JAX starts)."""
    code = textwrap.dedent(
        """
        import jax, jax.numpy as jnp, numpy as np, optax, rmsprop.optax
        from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
        assert len(jax.devices()) == 2
        mesh = Mesh(np.array(jax.devices()), ("data",))
        sharding = NamedSharding(mesh, P("data"))
        params = {"w": jax.device_put(jnp.arange(8.0), sharding), "b": jnp.ones(3)}
        transform = rmsprop.optax.rmsprop(0.01, preset="pytorch", momentum=0.9, weight_decay=0.1)
        state = transform.init(params)
        for buffers in (state.cache, state.momentum_buffer):
            assert buffers["w"].sharding.is_equivalent_to(sharding, 1), buffers["w"].sharding
        step = jax.jit(transform.update)
        grads = jax.tree.map(lambda p: p * 0.5, params)
        updates, state = step(grads, state, params)
        assert updates["w"].sharding.is_equivalent_to(sharding, 1), updates["w"].sharding
        assert state.cache["w"].sharding.is_equivalent_to(sharding, 1), state.cache["w"].sharding
        ours = optax.apply_updates(params, updates)
        plain = {k: np.asarray(v) for k, v in params.items()}
        single = rmsprop.optax.rmsprop(0.01, preset="pytorch", momentum=0.9, weight_decay=0.1)
        u, _ = single.update({k: v * 0.5 for k, v in plain.items()}, single.init(plain), plain)
        assert np.array_equal(np.asarray(ours["w"]), plain["w"] + np.asarray(u["w"]))
        print("ok")
        """
    )
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    env["JAX_PLATFORMS"] = "cpu"
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_every_option_is_an_explicit_keyword():
    """optax.inject_hyperparams reads the factory's signature: no **options catch-all."""
    import inspect  # noqa: PLC0415

    parameters = inspect.signature(rmsprop.optax.rmsprop).parameters
    assert all(p.kind is not inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    names = set(rmsprop.Hyperparameters.__dataclass_fields__) - {"lr"}
    assert names <= {n for n, p in parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert all(parameters[n].default is None for n in names)
