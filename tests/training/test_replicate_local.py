"""The batched local reparameterization's hand-written gradient: the autograd chain's value and gradients, and
finite differences (double precision)."""

import torch

from pyro_bnn.training.replicate_local import local_reparameterization


def _inputs(dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    R, B, d_in, d_out = 3, 5, 4, 6
    return (torch.randn(R, B, d_in, generator=g, dtype=dtype).requires_grad_(),
            torch.randn(R, d_out, d_in, generator=g, dtype=dtype).requires_grad_(),
            torch.randn(R, d_out, generator=g, dtype=dtype).requires_grad_(),
            torch.rand(R, d_out, d_in, generator=g, dtype=dtype).add(0.1).requires_grad_(),
            torch.rand(R, d_out, generator=g, dtype=dtype).add(0.1).requires_grad_(),
            torch.randn(R, B, d_out, generator=g, dtype=dtype))


def test_value_and_gradients_are_the_autograd_chains():
    h, w_loc, b_loc, w_var, b_var, noise = _inputs()
    mean = torch.baddbmm(b_loc.unsqueeze(1), h, w_loc.transpose(1, 2))
    variance = torch.baddbmm(b_var.unsqueeze(1), h * h, w_var.transpose(1, 2))
    chain = mean + variance.sqrt() * noise
    fused = local_reparameterization(h, w_loc, b_loc, w_var, b_var, noise)
    torch.testing.assert_close(fused, chain)
    weights = torch.randn_like(chain)
    expected = torch.autograd.grad((chain * weights).sum(), (h, w_loc, b_loc, w_var, b_var))
    got = torch.autograd.grad((fused * weights).sum(), (h, w_loc, b_loc, w_var, b_var))
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e)


def test_gradcheck():
    assert torch.autograd.gradcheck(local_reparameterization, _inputs(seed=1))


def test_inputs_without_gradient_get_none():
    h, w_loc, b_loc, w_var, b_var, noise = _inputs()
    x = h.detach()
    out = local_reparameterization(x, w_loc, b_loc, w_var, b_var, noise)
    out.sum().backward()
    assert x.grad is None and w_loc.grad is not None and b_var.grad is not None
