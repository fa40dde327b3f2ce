"""Pixel-to-prototype contrast within a split family, on the student's features.

Issue 14's fourth cause: the features of the last decoder stage barely separate a parent's
sub-types (sneaker vs the other footwear), so the classifier has little to split them on. This
loss acts on those features directly. Within each family F = T(k) with more than one member
(a split parent's children, or a widened class and the class it hides), the pixels whose
candidate set is a single member j of F are anchors of j; each anchor's normalised feature is
pulled to its own member's prototype and pushed from the other members'.

The form is the supervised pixel-to-prototype contrast of prototype-based segmentation
(cross-entropy over cosine similarities to class prototypes at a temperature), as the
"prototype matching" and "contrastive learning" terms of SDR (Michieli & Zanuttigh, CVPR 2021,
"Continual semantic segmentation via repulsion-attraction of sparse and disentangled latent
representations"), restricted here to the members of one family: the parent's other classes
are already told apart by the teacher's distillation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from incremental.losses._checks import at_least_fp32


def family_sets(teacher_sets: torch.Tensor) -> torch.Tensor:
    """The families: the rows of T with more than one member, (L, C) bool in teacher order (a
    split parent's children, or a widened class and the class it hides). The one definition
    that the contrast and the parent-set transforms share."""
    return teacher_sets[teacher_sets.sum(dim=1) > 1]


def member_prototypes(anchors: torch.Tensor, count: int, iterations: int = 5) -> torch.Tensor:
    """A member's prototypes: (min(count, N), D) unit vectors, from its (N, D) unit anchors.

    One prototype is the normalised mean. Several are spherical k-means centres: a remainder
    is often several things (footwear_other: sandals and ankle boots; garment_other: trousers
    and coats), and one mean between them is near neither. The start is farthest-point
    (the anchor least like the mean, then each time the anchor least like the centres so far),
    so the result is deterministic; a centre that loses all its anchors keeps its place.
    Computed without gradient: prototypes are targets, not paths.
    """
    with torch.no_grad():
        mean = F.normalize(anchors.mean(dim=0), dim=0)
        if count == 1 or len(anchors) == 1:
            return mean[None]
        centres = [anchors[(anchors @ mean).argmin()]]
        for _ in range(min(count, len(anchors)) - 1):
            nearest = (anchors @ torch.stack(centres).T).amax(dim=1)
            centres.append(anchors[nearest.argmin()])
        centres = torch.stack(centres)  # (k, D)
        for _ in range(iterations):
            assignment = (anchors @ centres.T).argmax(dim=1)  # (N,)
            sums = torch.zeros_like(centres).index_add_(0, assignment, anchors)
            counts = torch.bincount(assignment, minlength=len(centres))[:, None]
            centres = torch.where(counts > 0, F.normalize(sums, dim=1), centres)
        return centres


def family_contrast(
    features: torch.Tensor,
    candidates: torch.Tensor,
    teacher_sets: torch.Tensor,
    temperature: float = 0.1,
    prototypes: int = 1,
) -> torch.Tensor:
    """Pixel-to-prototype contrast within each family, balanced over its members.

    For a family F with members present as anchors in the batch (at least two), with
    z_p = features_p / ||features_p|| and the prototypes μ_j = normalise(mean of z over j's
    anchors), detached (they are targets, not paths):

        L_F = mean_j mean_{p ∈ anchors(j)} -log softmax_{j'}(z_p · μ_{j'} / τ)[j]

    With ``prototypes`` = m > 1 each member has up to m prototypes μ_{j,1..m}
    (:func:`member_prototypes`), and z_p · μ_j is the best of them, max_i z_p · μ_{j,i}: an
    anchor is pulled to its nearest own prototype and pushed from each other member's nearest.

    The mean over members first gives a rare child (408 labeled pixels per image) the same
    weight as a frequent remainder. The loss is the mean of L_F over the families that have
    two members present; 0 (with a zero gradient) where none has.

    Args:
        features: (B, D, h, w) student features (the decoder output); a size other than the
            labels' takes the labels by nearest-neighbour resampling (the top-left label of
            each cell: coarse enough features, DeepLab's 1/4 to 1/16, keep few anchors of a
            small child).
        candidates: (B, C, H, W) bool, the candidate sets after the strategy's transforms
            (refined sets make a confident unlabeled "footwear" an anchor of footwear_other).
        teacher_sets: (K, C) bool, T.
        temperature: τ > 0.
        prototypes: prototypes per member, m ≥ 1 (1: the mean, the SDR form).

    Returns:
        scalar loss, in fp32 under mixed precision.
    """
    if features.dim() != 4 or candidates.dim() != 4:
        raise ValueError(
            f"family_contrast: expected (B, D, h, w) features and (B, C, H, W) candidates, got "
            f"{tuple(features.shape)} and {tuple(candidates.shape)}"
        )
    if features.shape[0] != candidates.shape[0]:
        raise ValueError(
            f"family_contrast: {features.shape[0]} feature maps for {candidates.shape[0]} labels"
        )
    if temperature <= 0:
        raise ValueError(f"family_contrast: temperature must be > 0, got {temperature}")
    if prototypes < 1:
        raise ValueError(f"family_contrast: prototypes must be >= 1, got {prototypes}")
    if features.shape[-2:] != candidates.shape[-2:]:
        candidates = F.interpolate(
            candidates.float(), size=features.shape[-2:], mode="nearest"
        ).bool()
    singleton = candidates.sum(dim=1) == 1  # (B, h, w)
    label = candidates.to(torch.uint8).argmax(dim=1)  # (B, h, w): the singleton's class
    # Similarities over τ = 0.1 need fp32: autocast would run the matmul in half precision.
    with torch.autocast(device_type=features.device.type, enabled=False):
        z = F.normalize(at_least_fp32(features), dim=1).permute(0, 2, 3, 1)  # (B, h, w, D)
        losses = []
        for family in family_sets(teacher_sets.to(candidates.device)):
            anchors = [z[singleton & (label == c)] for c in family.nonzero().flatten().tolist()]
            anchors = [a for a in anchors if len(a)]  # (N_j, D) per member present
            if len(anchors) < 2:
                continue
            centres = [member_prototypes(a.detach(), prototypes) for a in anchors]
            if prototypes == 1:
                # One (M, D) product, as before several prototypes existed: the same bits as
                # then, so that committed rows of the one-prototype contrast still pair.
                means = torch.cat(centres)
                scores = [a @ means.T for a in anchors]  # (N_j, M) cosines
            else:  # each member's best prototype
                scores = [
                    torch.stack([(a @ c.T).amax(dim=1) for c in centres], dim=1) for a in anchors
                ]
            per_member = [
                F.cross_entropy(s / temperature, torch.full((len(s),), j, device=s.device))
                for j, s in enumerate(scores)
            ]
            losses.append(torch.stack(per_member).mean())
    if not losses:
        # (x * 0).sum(), not x.sum() * 0: a half-precision sum overflows to inf, and inf * 0 is NaN.
        return (z * 0).sum()
    return torch.stack(losses).mean()
