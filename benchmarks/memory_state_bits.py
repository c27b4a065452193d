"""Peak memory of a training step with float32 state and with ``state_bits`` 16 and 8.

ResNet-50's 161 parameter shapes (25.6 M float32 parameters) with gradients, in a
child process per kind of state (its kernels loaded first, by a step over one
parameter of 2**20 elements): its resident memory before the first step, then the peak
(``VmHWM``) of the first step, which allocates the state, and of a
later step (the peak reset between them through ``/proc/self/clear_refs``). glibc's
allocator is told to return freed memory (``MALLOC_MMAP_THRESHOLD_``), so that the
peaks count what each step holds. Printed: what each step raised the memory by over
the parameters and gradients, beside the state's own bytes (from its buffers).

    .venv/bin/python benchmarks/memory_state_bits.py [--momentum 0.9]
"""

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, math, re, sys
import torch
import rmsprop.torch
from rmsprop.bench._peers import resnet50_shapes

def status(key):
    return int(re.search(rf"{key}:\s+(\d+) kB", open("/proc/self/status").read()).group(1)) * 1024

def reset():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")

bits, momentum = int(sys.argv[1]), float(sys.argv[2])
torch.set_num_threads(2)
warm = torch.nn.Parameter(torch.zeros(1 << 20))  # compiled code loaded before measuring
warm.grad = torch.ones(1 << 20)
rmsprop.torch.RMSProp([warm], lr=1e-3, momentum=momentum, state_bits=bits).step()
params = [torch.nn.Parameter(torch.randn(s)) for s in resnet50_shapes()]
for p in params:
    p.grad = torch.randn(p.shape)
opt = rmsprop.torch.RMSProp(
    params, preset="pytorch", lr=1e-3, momentum=momentum, state_bits=bits,
    float32_arithmetic=True,
)
reset()
before = status("VmRSS")
opt.step()
first = status("VmHWM") - before
reset()
steady = status("VmRSS")
opt.step()
later = status("VmHWM") - steady
state = sum(
    t.numel() * t.element_size()
    for s in opt.state.values() for k, t in s.items() if k != "step"
)
print(json.dumps({
    "parameters": sum(p.numel() for p in params), "first": first, "later": later,
    "state": state, "held": steady - before,
}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--momentum", type=float, default=0.9)
    momentum = parser.parse_args().momentum
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    print(f"ResNet-50's shapes, float32 parameters, momentum {momentum} (MB = 10^6 bytes):")
    print(f"  {'state':<16} {'state bytes':>12} {'first step':>11} {'later step':>11}  per param")
    for bits in (32, 16, 8):
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(bits), str(momentum)],
            capture_output=True, text=True, timeout=600, check=True, env=env,
        )  # fmt: skip
        r = json.loads(done.stdout)
        label = "float32" if bits == 32 else f"state_bits={bits}"
        print(
            f"  {label:<16} {r['state'] / 1e6:9.1f} MB {r['first'] / 1e6:8.1f} MB "
            f"{r['later'] / 1e6:8.1f} MB  {r['state'] / r['parameters']:.3f} B"
        )
    print(
        "  (first step: what the step that allocates the state raised the peak by; later\n"
        "   step: what a step raises it by once the state exists)"
    )


if __name__ == "__main__":
    main()
