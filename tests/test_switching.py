"""The README's "Switching from torch.optim.RMSprop" snippets, where their library is
installed; the Hydra configuration, read as Hydra reads it, everywhere."""

import importlib

import pytest

torch = pytest.importorskip("torch")

import rmsprop.torch  # noqa: E402

CONFIG = {"_target_": "rmsprop.torch.RMSprop", "lr": 1e-3, "alpha": 0.9, "momentum": 0.9}


def model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def train(net, optimizer, steps=3):
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        optimizer.zero_grad()
        x = torch.randn(16, 4, generator=generator)
        torch.nn.functional.mse_loss(net(x), x[:, :1]).backward()
        optimizer.step()
    return [p.detach().clone() for p in net.parameters()]


def expected():
    net = model()
    return train(net, rmsprop.torch.RMSprop(net.parameters(), lr=1e-3, alpha=0.9, momentum=0.9))


def assert_same(ours):
    for a, b in zip(ours, expected(), strict=True):
        assert torch.equal(a, b)


def test_a_torch_optim_rmsprop_configuration_builds_it():
    """Hydra imports ``_target_`` by name and passes the other keys as keyword arguments."""
    module, name = CONFIG["_target_"].rsplit(".", 1)
    target = getattr(importlib.import_module(module), name)
    net = model()
    options = {k: v for k, v in CONFIG.items() if k != "_target_"}
    assert_same(train(net, target(net.parameters(), **options)))


def test_hydra_instantiate():
    hydra_utils = pytest.importorskip("hydra.utils")
    net = model()
    build = hydra_utils.instantiate({**CONFIG, "_partial_": True})
    assert_same(train(net, build(net.parameters())))


def test_timm_registry():
    pytest.importorskip("timm")
    from timm.optim import create_optimizer_v2  # noqa: PLC0415
    from timm.optim._optim_factory import OptimInfo, default_registry  # noqa: PLC0415

    info = OptimInfo(
        name="rmspropx", opt_class=rmsprop.torch.RMSprop,
        description="rmsprop.torch.RMSprop", has_momentum=True,
    )  # fmt: skip
    default_registry.register(info)
    net = model()
    optimizer = create_optimizer_v2(net, opt="rmspropx", lr=1e-3, alpha=0.9, momentum=0.9)
    assert isinstance(optimizer, rmsprop.torch.RMSprop)
    assert_same(train(net, optimizer))


def test_lightning_configure_optimizers():
    lightning = pytest.importorskip("lightning")

    class Module(lightning.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = model()

        def configure_optimizers(self):
            return rmsprop.torch.RMSprop(self.parameters(), lr=1e-3, alpha=0.9, momentum=0.9)

    optimizer = Module().configure_optimizers()
    assert isinstance(optimizer, torch.optim.Optimizer)


def test_hugging_face_trainer_optimizer_cls_and_kwargs():
    transformers = pytest.importorskip("transformers")
    net = model()
    optimizer_class, options = rmsprop.torch.RMSprop, {"lr": 1e-3, "alpha": 0.9}
    args = transformers.TrainingArguments(output_dir="unused", report_to=[])
    trainer = transformers.Trainer(
        model=net, args=args, optimizer_cls_and_kwargs=(optimizer_class, options)
    )
    trainer.create_optimizer()
    assert isinstance(trainer.optimizer, rmsprop.torch.RMSprop)
