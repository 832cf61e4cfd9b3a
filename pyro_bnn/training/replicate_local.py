"""Local reparameterization of R replicates' Linear layers in one op, with its gradient written out.

Each example's pre-activations are drawn from their marginal Normal: ``mean = b_loc + h W_loc^T``,
``variance = b_var + h^2 W_var^T`` and ``out = mean + sqrt(variance) * noise``, for ``h`` of shape ``(R, B, in)``.
Autograd would keep every intermediate of that chain and go through each of them again backwards (the square, the
clamp that keeps the root finite, the root, the product and the sum: one pass over ``(R, B, out)`` each, twice);
:class:`LocalReparameterization` keeps only ``noise / (2 sd)`` and writes the gradient in three passes. On the
batches of the UCI preset (20 replicates of 1,024 examples) that is most of a step's memory traffic.

The value is the chain's; the gradient is that of ``sqrt`` at the floor that keeps the root finite (``1e-30``, never
reached by a variance with a bias term in practice), i.e. it never vanishes where autograd's through the clamp would.
"""

from __future__ import annotations

import torch

#: The floor of a pre-activation variance under the square root.
VARIANCE_FLOOR = 1e-30


class LocalReparameterization(torch.autograd.Function):
    """``out = b_loc + h W_loc^T + sqrt(b_var + h^2 W_var^T) * noise``, batched over replicates (its arguments:
    :func:`local_reparameterization`)."""

    @staticmethod
    def forward(ctx, h, w_loc, b_loc, w_var, b_var, noise):
        squares = h * h
        sd = torch.baddbmm(b_var.unsqueeze(1), squares, w_var.transpose(1, 2)).clamp_min_(VARIANCE_FLOOR).sqrt_()
        out = torch.baddbmm(b_loc.unsqueeze(1), h, w_loc.transpose(1, 2)).addcmul_(sd, noise)
        half_noise_over_sd = sd.reciprocal_().mul_(noise).mul_(0.5)  # d out / d variance
        ctx.save_for_backward(h, squares, w_loc, w_var, half_noise_over_sd)
        return out

    @staticmethod
    def backward(ctx, grad):
        h, squares, w_loc, w_var, half_noise_over_sd = ctx.saved_tensors
        grad_variance = grad * half_noise_over_sd
        grad_h = grad_w_loc = grad_b_loc = grad_w_var = grad_b_var = None
        if ctx.needs_input_grad[0]:
            grad_h = torch.bmm(grad, w_loc).addcmul_(h, torch.bmm(grad_variance, w_var), value=2.0)
        if ctx.needs_input_grad[1]:
            grad_w_loc = torch.bmm(grad.transpose(1, 2), h)
        if ctx.needs_input_grad[2]:
            grad_b_loc = grad.sum(1)
        if ctx.needs_input_grad[3]:
            grad_w_var = torch.bmm(grad_variance.transpose(1, 2), squares)
        if ctx.needs_input_grad[4]:
            grad_b_var = grad_variance.sum(1)
        return grad_h, grad_w_loc, grad_b_loc, grad_w_var, grad_b_var, None


def local_reparameterization(h: torch.Tensor, w_loc: torch.Tensor, b_loc: torch.Tensor, w_var: torch.Tensor,
                             b_var: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """:class:`LocalReparameterization`: each example's pre-activations drawn from their marginal Normal.

    :param h: ``(R, B, in)`` inputs.
    :param w_loc: ``(R, out, in)`` the weights' means; ``b_loc``: ``(R, out)`` the biases'.
    :param w_var: ``(R, out, in)`` the weights' variances; ``b_var``: ``(R, out)`` the biases'.
    :param noise: ``(R, B, out)`` standard Normal draws (no gradient).
    :return: ``(R, B, out)``.
    """
    return LocalReparameterization.apply(h, w_loc, b_loc, w_var, b_var, noise)
