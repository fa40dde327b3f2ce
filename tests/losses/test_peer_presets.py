"""The `mib` and `plop` strategies train with the peers' own losses: their loss terms, on the
same tensors, equal what MiB's and PLOP's code computes (tests/data/peer_reference_README.md)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from incremental.losses import mib_candidates, mib_teacher_sets
from incremental.strategies import StepContext, create_strategy

DATA = Path(__file__).resolve().parents[1] / "data" / "peer_reference_losses.npz"


@pytest.fixture(scope="module")
def cases():
    with np.load(DATA) as npz:
        arrays = {k: torch.from_numpy(npz[k]) for k in npz.files}
    return [
        {k.split("_", 1)[1]: v for k, v in arrays.items() if k.startswith(f"case{i}_")}
        for i in range(3)
    ]


def _context(case: dict, **extra) -> StepContext:
    """A step on the peers' tensors: MiB/PLOP labels read as candidate sets (0 = background,
    an old class or unlabeled: every class but the new ones; new classes singletons; 255 every
    class), T with the new classes under the background."""
    k = int(case["num_old_classes"])
    logits = case["logits"].clone().requires_grad_(True)
    candidates = mib_candidates(case["labels"], k, logits.shape[1])
    return StepContext(
        logits=logits,
        candidates=candidates,
        informative=~candidates.all(dim=1),
        teacher_sets=mib_teacher_sets(k, logits.shape[1]),
        representatives=torch.arange(k),
        teacher_logits=case["old_logits"],
        **extra,
    )


@pytest.mark.parametrize("i", range(3))
def test_mib_preset_is_mibs_loss(cases, i):
    terms = create_strategy("mib").loss_terms(_context(cases[i]))
    torch.testing.assert_close(sum(terms.values()), cases[i]["mib_loss"], atol=1e-5, rtol=1e-5)


def _our_thresholds(case: dict) -> torch.Tensor:
    """PLOP's thresholds on our entropy scale. Ours is Σ_c p log p / log K in [0, 1]; PLOP's is
    a mean over the K classes, divided by log K and again by log C: ours = PLOP's · K · log C."""
    k, c = int(case["num_old_classes"]), case["logits"].shape[1]
    return case["plop_thresholds"][:k] * k * math.log(c)


@pytest.mark.parametrize("i", range(3))
def test_plop_preset_is_plops_loss(cases, i):
    case = cases[i]
    features = [case[f"plop_features_{j}"] for j in range(5)]
    old_features = [case[f"plop_old_features_{j}"] for j in range(5)]
    step = _context(
        case,
        student_features=[*features, case["plop_small_logits"]],
        teacher_features=[*old_features, case["plop_old_small_logits"]],
        state={"entropy_thresholds": _our_thresholds(case)},
    )
    terms = create_strategy("plop").loss_terms(step)
    assert list(terms) == ["ce", "pod"]
    torch.testing.assert_close(terms["ce"], case["plop_ce"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(terms["pod"], case["plop_pod"], atol=1e-5, rtol=1e-5)


def test_plop_normalised_is_another_loss(cases):
    """The named variant keeps this project's earlier reading: not PLOP's numbers."""
    case = cases[0]
    features = [case[f"plop_features_{j}"] for j in range(5)]
    old_features = [case[f"plop_old_features_{j}"] for j in range(5)]
    step = _context(
        case,
        student_features=features,
        teacher_features=old_features,
        state={"entropy_thresholds": _our_thresholds(case)},
    )
    terms = create_strategy("plop-normalised").loss_terms(step)
    assert not torch.allclose(terms["pod"], case["plop_pod"], atol=1e-3)
    assert not torch.allclose(terms["ce"], case["plop_ce"], atol=1e-3)
