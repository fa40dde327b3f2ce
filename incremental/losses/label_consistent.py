"""Label-consistent set distillation: the teacher's mass goes only where the label allows it.

At a pixel whose label set S is a proper multi-class set (an unlabeled pixel of a new image,
"anything but sneaker"; an old "footwear" pixel, {sneaker, footwear_other}), the student side of
teacher class k is ``T(k) ∩ S`` and the teacher is renormalised over the k with
``T(k) ∩ S ≠ ∅``::

    L = -Σ_k q̃_k log Σ_{c∈T(k)∩S} p_c,     q̃_k ∝ q_k · [T(k) ∩ S ≠ ∅]

Elsewhere (a singleton label, an ignored pixel) it is plain set distillation (S = every class).
It is the soft, threshold-free form of teacher refinement: on an unlabeled sandal of a new image
the teacher's "footwear" now teaches ``footwear_other`` alone, since S excludes the sneaker.
With S the full set everywhere it is :func:`~incremental.losses.set_distillation`, and with MiB's
T, MiB's unbiased distillation times the number of old classes.
"""

from __future__ import annotations

import torch

from incremental.losses._checks import (
    SMALLEST_SET_PROB,
    at_least_fp32,
    check_candidates,
    check_logits,
    check_reduction,
    reduce_pixels,
)
from incremental.losses._set_layout import layout_of, sum_over_sets, times_owner
from incremental.losses.set_distillation import set_distillation


def consistent_sets(
    candidates: torch.Tensor, singletons: bool | torch.Tensor = False
) -> torch.Tensor:
    """The label sets that condition: S where it holds more than one class but not all, and
    where it is one class c with ``singletons[c]`` (a (C,) bool; True: every class); every
    class elsewhere. (B, C, H, W) bool -> same."""
    size = candidates.sum(dim=1, keepdim=True)
    proper = (size > 1) & (size < candidates.shape[1])
    if isinstance(singletons, torch.Tensor):
        chosen = (candidates & singletons.view(1, -1, 1, 1)).any(dim=1, keepdim=True)
        proper |= (size == 1) & chosen
    elif singletons:
        proper |= size == 1
    return candidates | ~proper


class _LabelConsistentKD(torch.autograd.Function):
    """``-Σ_k q̃_k log P̃_k`` with ``P̃_k = Σ_{c∈T(k)∩S} p_c`` for a T that partitions the classes,
    with a hand-written backward: ``∂L/∂z_c = p_c - [c∈S] q̃_{k(c)} p_c / P̃_{k(c)}`` (Σ q̃ = 1)."""

    @staticmethod
    def forward(ctx, logits, q, sets, layout, owner_index, probs):
        in_sets = probs * sets
        set_probs = sum_over_sets(in_sets, layout)
        # Where T(k) misses S, both q_k and P̃_k are 0: the clamp keeps 0 · log from NaN.
        if bool(((set_probs <= SMALLEST_SET_PROB) & (q > 0)).any()):
            ctx.exact = True  # a set far less likely than the argmax: exact, through autograd
            ctx.save_for_backward(logits, q, sets, owner_index)
            with torch.enable_grad():
                return _exact(logits.detach(), q, sets, owner_index).detach()
        ctx.exact, ctx.layout = False, layout
        set_probs.clamp_min_(SMALLEST_SET_PROB)
        ctx.save_for_backward(probs, in_sets, q, set_probs)
        return -(q * set_probs.log()).sum(dim=1)

    @staticmethod
    def backward(ctx, grad):
        if ctx.exact:
            logits, q, sets, owner_index = ctx.saved_tensors
            with torch.enable_grad():
                leaf = logits.detach().requires_grad_(True)
                (grad_logits,) = torch.autograd.grad(_exact(leaf, q, sets, owner_index), leaf, grad)
            return grad_logits, None, None, None, None, None
        probs, in_sets, q, set_probs = ctx.saved_tensors
        layout = ctx.layout
        grad_logits = probs - times_owner(in_sets, q / set_probs, layout.owner, layout.owner_prefix)
        return grad_logits.mul_(grad.unsqueeze(1)), None, None, None, None, None


def _exact(
    logits: torch.Tensor, q: torch.Tensor, sets: torch.Tensor, owner_index: torch.Tensor
) -> torch.Tensor:
    """The same loss in the log domain: per set, a logsumexp over its allowed classes."""
    masked = logits.masked_fill(~sets, float("-inf"))
    shift = torch.full_like(q, float("-inf")).scatter_reduce(
        1, owner_index, masked, "amax", include_self=True
    )
    shift = torch.where(torch.isfinite(shift), shift, 0.0).detach()
    exps = (masked - shift.gather(1, owner_index)).exp()
    summed = torch.zeros_like(q).scatter_add(1, owner_index, exps)
    summed = torch.where(q > 0, summed, 1.0)  # sets the teacher does not use: any finite value
    log_set_probs = shift + summed.log() - logits.logsumexp(dim=1, keepdim=True)
    return -(q * log_set_probs).sum(dim=1)


def label_consistent_distillation(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    teacher_sets: torch.Tensor,
    candidates: torch.Tensor,
    temperature: float = 1.0,
    reduction: str = "mean",
    probs: torch.Tensor | None = None,
    singletons: bool | torch.Tensor = False,
) -> torch.Tensor:
    """Label-consistent set distillation (see the module docstring), averaged over pixels.

    Args:
        student_logits: (B, C, H, W).
        teacher_logits: (B, K, H, W); not differentiated.
        teacher_sets: (K, C) bool, row k = T(k); a T that does not partition the student's
            classes falls back to :func:`set_distillation` with label conditioning.
        candidates: (B, C, H, W) bool, the labels' candidate sets S.
        temperature: teacher softmax temperature.
        reduction: ``"mean"`` over pixels, ``"sum"`` or ``"none"`` -> (B, H, W).
        probs: optional ``student_logits.softmax(1)`` computed without grad.
        singletons: at a pixel labeled with one class c (all of them if True; those with
            ``singletons[c]`` for a (C,) bool), keep only the teacher classes k with c ∈ T(k)
            (renormalised; their mass still goes to all of T(k)). Without it a labeled
            new-class pixel (a bag, which the teacher never saw and calls "coat") is also
            taught the teacher's "coat", against its label.
    """
    check_logits("student_logits", student_logits)
    check_logits("teacher_logits", teacher_logits)
    check_candidates(student_logits, candidates)
    check_reduction(reduction)
    student_logits = at_least_fp32(student_logits)
    teacher_sets = teacher_sets.to(student_logits.device)
    layout = layout_of(teacher_sets)
    sets = consistent_sets(candidates)  # the student side: proper multi-class sets only
    teacher_side = sets if singletons is False else consistent_sets(candidates, singletons)
    if layout.owner is None:
        return set_distillation(
            student_logits, teacher_logits, teacher_sets, temperature, teacher_side,
            reduction=reduction,
        )  # fmt: skip
    b, c, h, w = student_logits.shape
    owner_index = layout.owner.view(1, c, 1, 1).expand(b, c, h, w)
    allowed = sum_over_sets(teacher_side, layout, reduce="any")
    scaled = at_least_fp32(teacher_logits.detach()) / temperature
    q = scaled.masked_fill(~allowed, float("-inf")).softmax(dim=1).to(student_logits.dtype)
    if probs is None:
        with torch.no_grad():
            probs = student_logits.softmax(dim=1)
    loss = _LabelConsistentKD.apply(student_logits, q, sets, layout, owner_index, probs)
    return reduce_pixels(loss, torch.ones_like(loss), reduction)
