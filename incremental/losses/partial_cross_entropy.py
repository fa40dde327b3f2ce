"""Partial-label cross-entropy over candidate sets (label-set NLL).

A pixel whose label only says "one of the classes in S" is scored by the probability the model
gives to the whole set: ``L = -log Σ_{c∈S} p_c = logsumexp(z) - logsumexp(z_S)``. A singleton
set gives plain cross-entropy; the full set gives 0 (no information). Fidon et al., "Label-set
loss functions for partial supervision", 2021; MiB's unbiased CE is the case
S = {background} ∪ old classes.
"""

from __future__ import annotations

import torch
from torch import nn

from incremental.losses._checks import (
    SMALLEST_SET_PROB,
    at_least_fp32,
    check_candidates,
    check_logits,
    check_reduction,
    reduce_pixels,
)


class _CandidateSetNLL(torch.autograd.Function):
    """``-log Σ_{c∈S} p_c`` with a hand-written backward, ``∂L/∂z_c = p_c - [c∈S] p_c / p_S``.

    Autograd through two logsumexps costs about four times as much on CPU; one softmax forward
    and two passes backward keep the loss close to ``F.cross_entropy``
    (``benchmarks/loss_speed.py``).
    """

    @staticmethod
    def forward(
        ctx, logits: torch.Tensor, candidates: torch.Tensor, probs: torch.Tensor | None
    ) -> torch.Tensor:
        if probs is None:
            probs = logits.softmax(dim=1)
        in_set = probs * candidates
        set_prob = in_set.sum(dim=1)
        if bool((set_prob > SMALLEST_SET_PROB).all()):
            nll = -set_prob.log()
        else:  # some set is far less likely than the argmax: exact but slower
            masked = logits.masked_fill(~candidates, float("-inf"))
            nll = logits.logsumexp(dim=1) - masked.logsumexp(dim=1)
            in_set, set_prob = masked.softmax(dim=1), torch.ones_like(nll)
        ctx.save_for_backward(probs, in_set, set_prob)
        return nll

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        probs, in_set, set_prob = ctx.saved_tensors
        grad_logits = probs * grad.unsqueeze(1)
        grad_logits.addcmul_(in_set, (grad / set_prob).unsqueeze(1), value=-1.0)
        return grad_logits, None, None


def candidate_set_nll(
    logits: torch.Tensor, candidates: torch.Tensor, probs: torch.Tensor | None = None
) -> torch.Tensor:
    """``-log Σ_{c∈S} softmax(z)_c`` per pixel: (B, C, H, W), (B, C, H, W) bool -> (B, H, W).

    Non-negative; 0 where the set is full. ``probs``: optional ``logits.softmax(1)`` computed
    without grad, shared with other losses.
    """
    return _CandidateSetNLL.apply(logits, candidates, probs)


def partial_cross_entropy(
    logits: torch.Tensor,
    candidates: torch.Tensor,
    weight: torch.Tensor | None = None,
    gamma: float = 0.0,
    reduction: str = "mean",
    informative: torch.Tensor | None = None,
    probs: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy of a candidate set, with optional class weights and focal modulation.

    ``L = -w(S) · (1 - p_S)^γ · log p_S`` with ``p_S = Σ_{c∈S} p_c``.

    Pixels whose set is every class carry no information: they get loss 0 and no gradient,
    whatever their logits, and do not count in the mean. For class weights ``w``, a set's
    weight is the model's expectation of ``w`` within the set,
    ``w(S) = Σ_{c∈S} w_c p_c / p_S`` (not differentiated), so a singleton gets ``w_c`` as in
    ``F.cross_entropy(weight=w)``; ``mean`` divides by the summed pixel weights, as it does.

    Args:
        logits: (B, C, H, W) student logits.
        candidates: (B, C, H, W) bool candidate sets (non-empty at every pixel).
        weight: optional (C,) class weights.
        gamma: focal exponent; 0 gives cross-entropy.
        reduction: ``"mean"`` over informative pixels, ``"sum"``, or ``"none"`` -> (B, H, W).
        informative: optional (B, H, W) bool, pixels whose set is not every class; computed
            from ``candidates`` when not given (the membership table knows it for free).
        probs: optional ``logits.softmax(1)`` computed without grad, to share one softmax
            with :func:`~incremental.losses.set_distillation`.

    Example:
        >>> z = torch.randn(2, 3, 4, 4)
        >>> y = torch.randint(0, 3, (2, 4, 4))
        >>> s = torch.nn.functional.one_hot(y, 3).permute(0, 3, 1, 2).bool()
        >>> torch.allclose(partial_cross_entropy(z, s), torch.nn.functional.cross_entropy(z, y))
        True
    """
    check_logits("logits", logits)
    check_candidates(logits, candidates)
    check_reduction(reduction)
    logits = at_least_fp32(logits)
    if informative is None:
        informative = ~candidates.all(dim=1)
    nll = candidate_set_nll(logits, candidates, probs)
    loss = nll
    if gamma:
        # 1 - p_S, clamped: rounding makes nll slightly negative on full sets, and a zero base
        # has an infinite derivative for gamma < 1; either gave NaN gradients through the
        # torch.where below at pixels that must get none.
        one_minus_p = (-torch.expm1(-nll)).clamp_min(torch.finfo(nll.dtype).tiny)
        loss = one_minus_p.pow(gamma) * nll
    pixel_weight = informative.to(logits.dtype)
    if weight is not None:
        if weight.shape != (logits.shape[1],):
            raise ValueError(f"weight: expected ({logits.shape[1]},), got {tuple(weight.shape)}")
        with torch.no_grad():
            within_set = logits.masked_fill(~candidates, float("-inf")).softmax(dim=1)
            set_weight = (within_set * weight.to(logits.dtype)[None, :, None, None]).sum(dim=1)
        pixel_weight = pixel_weight * set_weight
    loss = torch.where(informative, loss * pixel_weight, torch.zeros_like(loss))
    return reduce_pixels(loss, pixel_weight, reduction)


class PartialCrossEntropy(nn.Module):
    """Module form of :func:`partial_cross_entropy` (class weights kept as a buffer)."""

    def __init__(
        self, weight: torch.Tensor | None = None, gamma: float = 0.0, reduction: str = "mean"
    ) -> None:
        super().__init__()
        check_reduction(reduction)
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight))
        self.gamma = gamma
        self.reduction = reduction

    def forward(
        self,
        logits: torch.Tensor,
        candidates: torch.Tensor,
        informative: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return partial_cross_entropy(
            logits, candidates, self.weight, self.gamma, self.reduction, informative
        )
