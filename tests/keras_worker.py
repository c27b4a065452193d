"""One Keras backend's checks of rmsprop.keras.RMSprop, in a process of its own (Keras
fixes its backend at import): ``python keras_worker.py BACKEND``; prints JSON."""

import json
import os
import sys
import tempfile


def main(backend):
    os.environ["KERAS_BACKEND"] = backend
    os.environ["JAX_ENABLE_X64"] = "1"  # float64 variables on JAX
    import keras  # noqa: PLC0415 (after the backend is chosen)
    import numpy as np  # noqa: PLC0415

    import rmsprop  # noqa: PLC0415
    import rmsprop.keras  # noqa: PLC0415

    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((16, 6)).astype("float32")
    targets = rng.standard_normal((16, 2)).astype("float32")

    def model():
        keras.utils.set_random_seed(0)
        return keras.Sequential(
            [keras.Input((6,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(2)]
        )

    def weights(m):
        return [np.asarray(w) for w in m.get_weights()]

    def fitted(optimizer, epochs):
        m = model()
        m.compile(optimizer=optimizer, loss="mse")
        m.fit(
            inputs, targets, batch_size=8, epochs=epochs, verbose=0, shuffle=False
        )  # 2 steps an epoch
        return m

    results = {}
    for name, options in {
        "plain": {}, "momentum": {"momentum": 0.9}, "centered": {"centered": True},
        "all": {"momentum": 0.9, "centered": True, "weight_decay": 0.01},
    }.items():  # fmt: skip
        theirs = fitted(keras.optimizers.RMSprop(learning_rate=0.01, **options), 25)
        ours = fitted(rmsprop.keras.RMSprop(0.01, **options), 25)
        results[f"keras {name}"] = all(
            np.array_equal(a, b) for a, b in zip(weights(theirs), weights(ours), strict=True)
        )

    keras.config.set_floatx("float64")  # else Keras holds the learning rate in float32
    grads = [rng.standard_normal(5) for _ in range(50)]
    p0 = rng.standard_normal(5)
    for preset, options in [
        (None, {}), ("pytorch", {"momentum": 0.9, "centered": True, "weight_decay": 0.1}),
        ("tensorflow", {"momentum": 0.9}), ("optax", {"nesterov": True, "momentum": 0.9,
         "bias_correction": True}), ("timm", {"weight_decay": 0.01, "centered": True}),
        ("keras", {"nesterov": True, "momentum": 0.5, "maximize": True}),
    ]:  # fmt: skip
        variable = keras.Variable(p0.copy(), dtype="float64")
        optimizer = rmsprop.keras.RMSprop(0.01, preset=preset, **options)
        for g in grads:
            optimizer.apply_gradients([(keras.ops.convert_to_tensor(g), variable)])
        expected = p0.copy()
        numpy_optimizer = rmsprop.RMSProp([expected], preset=preset, lr=0.01, **options)
        for g in grads:
            numpy_optimizer.step([g])
        ours = np.asarray(keras.ops.convert_to_numpy(variable))
        results[f"preset {preset}"] = float(np.max(np.abs(ours - expected) / np.abs(expected)))
    keras.config.set_floatx("float32")

    # Saved with the model, loaded, and training on as before.
    for preset, options in [("keras", {"momentum": 0.9}), ("pytorch", {"centered": True})]:
        schedule = keras.optimizers.schedules.ExponentialDecay(0.01, 10, 0.9)
        m = fitted(rmsprop.keras.RMSprop(schedule, preset=preset, **options), 5)
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "model.keras")
            m.save(path)
            loaded = keras.models.load_model(path)
        same_type = type(loaded.optimizer) is rmsprop.keras.RMSprop
        for net in (m, loaded):
            net.fit(inputs, targets, batch_size=8, epochs=5, verbose=0, shuffle=False)
        results[f"saved {preset}"] = same_type and all(
            np.array_equal(a, b) for a, b in zip(weights(m), weights(loaded), strict=True)
        )
    refused = []
    for wrong in ({"lr": 0.1}, {"preset": None}):  # lr is learning_rate; the seed has no default
        try:
            rmsprop.keras.RMSprop(**wrong)
        except TypeError as error:
            refused.append(type(error).__name__)
    results["refused"] = refused
    print(json.dumps(results))


if __name__ == "__main__":  # pytest collects this file too: only a run checks
    main(sys.argv[1])
