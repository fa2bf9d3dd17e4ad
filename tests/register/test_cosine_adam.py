"""The affine fit's hand-written Adam and the SyN step's quantile match torch's bit for bit, and registering never loads the compiler."""

from __future__ import annotations

import subprocess
import sys

import torch

from medcli.register.methods import CosineAdam


def test_cosine_adam_is_torch_adam_with_cosine_annealing():
    torch.manual_seed(0)
    target = torch.randn(3, 3, dtype=torch.float64)
    ours = [torch.zeros(3, 3, dtype=torch.float64, requires_grad=True)]
    theirs = [torch.zeros(3, 3, dtype=torch.float64, requires_grad=True)]
    opt = CosineAdam(ours, 0.05, 25)
    ref = torch.optim.Adam(theirs, lr=0.05)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(ref, 25, eta_min=0.0)
    for _ in range(25):
        ((ours[0] - target) ** 4).sum().backward()
        opt.step()
        ref.zero_grad()
        ((theirs[0] - target) ** 4).sum().backward()
        ref.step()
        sched.step()
    assert torch.equal(ours[0], theirs[0])
    assert ours[0].grad is None


def test_registration_does_not_import_the_compiler():
    code = (
        "import sys, numpy as np\n"
        "from medcli.image import Image\n"
        "from medcli.register.methods import Options, register\n"
        "x = np.zeros((24, 24, 24), np.float32); x[6:18, 5:17, 7:19] = 1; x[9:13, 9:12, 10:14] = 2\n"
        "a = np.diag([2.0, 2, 2, 1])\n"
        # syn: its NCC branch's vector-Jacobian product once imported sympy through autograd's grad_outputs check
        "r = register(Image(np.roll(x, 1, 0), a), Image(x, a), kind='syn', metric='ncc', options=Options(affine_levels=((4.0, 5),), "
        "syn_levels=((4.0, 2),)))\n"
        "print(sorted(m for m in ('torch._dynamo', 'torch._inductor.config', 'sympy') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_quantile_is_torch_quantile_bit_for_bit():
    from medcli.register.grid import quantile

    g = torch.Generator().manual_seed(0)
    for n in (1, 2, 3, 17, 1000, 200001):
        x = torch.rand(n, generator=g) ** 3 * 7.0
        for q in (0.0, 0.5, 0.9, 0.95, 0.999, 1.0):
            assert torch.equal(quantile(x, q), torch.quantile(x, q)), (n, q)
    x = torch.tensor([3.0, 1.0, 2.0, 2.0])
    assert float(quantile(x, 0.5)) == 2.0 and float(quantile(x, 1.0)) == 3.0
