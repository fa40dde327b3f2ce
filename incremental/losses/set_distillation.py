"""Set distillation: the teacher's old class k is matched by the student's set T(k).

``L_kd = -Σ_k q_k · log Σ_{c∈T(k)} p_c`` with ``q = softmax(teacher_logits / temperature)``.
After a transition the teacher's "car" is the student's {car_other, police_car}, and (new
class case) its "background" is {background, new}. MiB's unbiased KD (Cermelli et al., CVPR
2020) is the case T(background) = {background} ∪ new classes.

Label-conditioned distillation keeps, at a pixel with candidate set S, only the teacher classes
whose T(k) meets S and renormalises q over them: on a pixel labeled "bag", the teacher's guess
"coat" is impossible and no longer fights the label.
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
from incremental.losses._set_layout import layout_of, select_channels, times_owner


def _check_teacher_sets(teacher_sets: torch.Tensor, num_old: int, num_new: int) -> None:
    if teacher_sets.shape != (num_old, num_new) or teacher_sets.dtype != torch.bool:
        raise ValueError(
            f"teacher_sets: expected a ({num_old}, {num_new}) bool tensor, got "
            f"{tuple(teacher_sets.shape)} {teacher_sets.dtype}"
        )
    empty = layout_of(teacher_sets).empty
    if empty:
        raise ValueError(f"teacher_sets: teacher class(es) {list(empty)} map to no student class")


def set_log_probs(log_probs: torch.Tensor, teacher_sets: torch.Tensor) -> torch.Tensor:
    """Student log-probabilities of the teacher's sets, ``log Σ_{c∈T(k)} p_c``.

    Args:
        log_probs: (B, C, H, W) student log-softmax.
        teacher_sets: (K, C) bool.

    Returns:
        (B, K, H, W). Singleton sets are a gather; only the few larger sets pay a logsumexp.
    """
    layout = layout_of(teacher_sets)
    out = select_channels(log_probs, layout.first, layout.first_prefix).clone()
    for k, members in layout.larger:
        out[:, k] = log_probs.index_select(1, members).logsumexp(dim=1)
    return out


class _SetCrossEntropy(torch.autograd.Function):
    """``-Σ_k q_k log P_k`` with ``P_k = Σ_{c∈T(k)} p_c``, for a T that partitions the student's
    classes (k(c) = the set holding c) and a distribution q, with a hand-written backward:
    ``∂L/∂z_c = p_c - q_{k(c)} p_c / P_{k(c)}``.

    About half the cost of autograd through log-softmax, gather and logsumexp on CPU
    (``benchmarks/loss_speed.py``).
    """

    @staticmethod
    def forward(ctx, logits, q, teacher_sets, layout, probs):
        if probs is None:
            probs = logits.softmax(dim=1)
        set_probs = select_channels(probs, layout.first, layout.first_prefix).clone()
        for k, members in layout.larger:
            set_probs[:, k] = probs.index_select(1, members).sum(dim=1)
        ctx.within_set, ctx.layout = None, layout
        if bool((set_probs > SMALLEST_SET_PROB).all()):
            log_set_probs = set_probs.log()
        else:  # a set far less likely than the argmax: exact but slower
            log_probs = logits.log_softmax(dim=1)
            log_set_probs = set_log_probs(log_probs, teacher_sets)
            by_class = select_channels(log_set_probs, layout.owner, layout.owner_prefix)
            ctx.within_set = (log_probs - by_class).exp()
        ctx.save_for_backward(probs, q, set_probs)
        return -(q * log_set_probs).sum(dim=1)

    @staticmethod
    def backward(ctx, grad):
        probs, q, set_probs = ctx.saved_tensors
        owner, prefix = ctx.layout.owner, ctx.layout.owner_prefix
        if ctx.within_set is None:
            grad_logits = times_owner(probs, (q / set_probs).neg_().add_(1.0), owner, prefix)
        else:
            grad_logits = probs - select_channels(q, owner, prefix) * ctx.within_set
        return grad_logits.mul_(grad.unsqueeze(1)), None, None, None, None


def teacher_probs(
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    candidates: torch.Tensor | None = None,
    teacher_sets: torch.Tensor | None = None,
) -> torch.Tensor:
    """Teacher softmax (B, K, H, W), optionally conditioned on the student's candidate sets.

    With ``candidates`` (B, C, H, W) and ``teacher_sets`` (K, C), teacher class k is kept at a
    pixel only where T(k) meets the pixel's set; q is renormalised over the kept classes.
    Every pixel keeps at least one class when the sets of T cover every student class.
    """
    scaled = at_least_fp32(teacher_logits.detach()) / temperature
    if candidates is not None:
        if teacher_sets is None:
            raise ValueError("label-conditioned teacher probabilities need teacher_sets")
        compatible = (
            torch.einsum(
                "kc,bchw->bkhw", teacher_sets.to(scaled.dtype), candidates.to(scaled.dtype)
            )
            > 0
        )
        scaled = scaled.masked_fill(~compatible, float("-inf"))
    return scaled.softmax(dim=1)


def _set_cross_entropy(
    logits: torch.Tensor,
    q: torch.Tensor,
    teacher_sets: torch.Tensor,
    probs: torch.Tensor | None = None,
) -> torch.Tensor:
    """``-Σ_k q_k log P_k`` per pixel, (B, H, W)."""
    layout = layout_of(teacher_sets)
    if layout.owner is not None:
        return _SetCrossEntropy.apply(logits, q, teacher_sets, layout, probs)
    # T is not a partition (a class in two sets or none): plain autograd.
    return -(q * set_log_probs(logits.log_softmax(dim=1), teacher_sets)).sum(dim=1)


def set_distillation(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    teacher_sets: torch.Tensor,
    temperature: float = 1.0,
    candidates: torch.Tensor | None = None,
    pixel_mask: torch.Tensor | None = None,
    reduction: str = "mean",
    probs: torch.Tensor | None = None,
) -> torch.Tensor:
    """Distill the teacher's old-class distribution into the student's sets of classes.

    ``L = -Σ_k q_k · log Σ_{c∈T(k)} p_c``. The temperature scales the teacher only (MiB's
    ``alpha`` is ``1 / temperature``). With one-to-one T this is the cross-entropy part of the
    usual KL distillation (the two differ by the teacher's entropy, a constant).

    Args:
        student_logits: (B, C, H, W).
        teacher_logits: (B, K, H, W); not differentiated.
        teacher_sets: (K, C) bool, row k = T(k).
        temperature: teacher softmax temperature.
        candidates: optional (B, C, H, W) bool candidate sets for label-conditioned
            distillation (see :func:`teacher_probs`).
        pixel_mask: optional (B, H, W) bool, pixels that count.
        reduction: ``"mean"`` over counted pixels, ``"sum"`` or ``"none"`` -> (B, H, W).
        probs: optional ``student_logits.softmax(1)`` computed without grad, to share one
            softmax with :func:`~incremental.losses.partial_cross_entropy`.
    """
    check_logits("student_logits", student_logits)
    check_logits("teacher_logits", teacher_logits)
    b, c, h, w = student_logits.shape
    if teacher_logits.shape[0] != b or teacher_logits.shape[2:] != (h, w):
        raise ValueError(
            f"teacher_logits: expected (B={b}, K, H={h}, W={w}), got {tuple(teacher_logits.shape)}"
        )
    _check_teacher_sets(teacher_sets, teacher_logits.shape[1], c)
    check_reduction(reduction)
    if candidates is not None:
        check_candidates(student_logits, candidates)
    student_logits = at_least_fp32(student_logits)
    teacher_sets = teacher_sets.to(student_logits.device)
    q = teacher_probs(teacher_logits, temperature, candidates, teacher_sets).to(
        student_logits.dtype
    )
    loss = _set_cross_entropy(student_logits, q, teacher_sets, probs)
    if pixel_mask is None:
        weight = torch.ones_like(loss)
    else:
        weight = pixel_mask.to(loss.dtype)
        loss = torch.where(pixel_mask, loss, torch.zeros_like(loss))
    return reduce_pixels(loss, weight, reduction)


class SetDistillation(nn.Module):
    """Module form of :func:`set_distillation`; ``teacher_sets`` kept as a buffer.

    Args:
        teacher_sets: (K, C) bool.
        temperature: teacher softmax temperature.
        label_conditioned: condition the teacher on the candidate sets passed to ``forward``.
    """

    def __init__(
        self,
        teacher_sets: torch.Tensor,
        temperature: float = 1.0,
        label_conditioned: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.register_buffer("teacher_sets", teacher_sets.bool())
        self.temperature = temperature
        self.label_conditioned = label_conditioned
        self.reduction = reduction

    def forward(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        candidates: torch.Tensor | None = None,
        pixel_mask: torch.Tensor | None = None,
        probs: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return set_distillation(
            student_logits,
            teacher_logits,
            self.teacher_sets,
            self.temperature,
            candidates if self.label_conditioned else None,
            pixel_mask,
            self.reduction,
            probs,
        )
