"""MultiBox loss: finiteness, empty images, hard negative mining, and that it can be minimised."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from featherface.detection.matching import match_batch
from featherface.detection.priors import prior_boxes as make_priors
from featherface.engine.losses import LossTerms, MultiBoxLoss, hard_negative_mask

PRIORS = make_priors((64, 64))
NUM = PRIORS.shape[0]


def face_target(box: list[float], with_landmarks: bool = True) -> dict[str, torch.Tensor]:
    """One face (normalised corners) with landmarks inside it, or NaN landmarks."""
    boxes = torch.tensor([box])
    x1, y1, x2, y2 = box
    points = [x1 + 0.3 * (x2 - x1), y1 + 0.4 * (y2 - y1)] * 5
    landmarks = torch.tensor([points]) if with_landmarks else torch.full((1, 10), float("nan"))
    return {"boxes": boxes, "landmarks": landmarks}


def no_faces() -> dict[str, torch.Tensor]:
    return {"boxes": torch.zeros(0, 4), "landmarks": torch.zeros(0, 10)}


def random_outputs(batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (
        torch.randn(batch, NUM, 4, generator=generator),
        torch.randn(batch, NUM, 2, generator=generator),
        torch.randn(batch, NUM, 10, generator=generator),
    )


def test_terms_are_finite_and_combine_as_documented() -> None:
    targets = [face_target([0.1, 0.1, 0.5, 0.6]), face_target([0.5, 0.2, 0.9, 0.7], False)]
    terms = MultiBoxLoss(loc_weight=2.0, landmark_weight=0.5)(random_outputs(2), targets, PRIORS)
    assert isinstance(terms, LossTerms)
    for value in terms:
        assert value.dim() == 0 and torch.isfinite(value)
    assert terms.loc > 0 and terms.cls > 0 and terms.landm > 0
    torch.testing.assert_close(terms.total, 2.0 * terms.loc + terms.cls + 0.5 * terms.landm)


def test_image_without_faces_gives_zero_box_and_landmark_loss() -> None:
    outputs = tuple(t.requires_grad_() for t in random_outputs(1))
    terms = MultiBoxLoss()(outputs, [no_faces()], PRIORS)
    assert terms.loc == 0 and terms.landm == 0
    assert torch.isfinite(terms.cls) and torch.isfinite(terms.total)
    terms.total.backward()
    assert all(torch.all(t.grad == 0) for t in outputs)


def test_image_without_faces_adds_nothing_to_a_batch() -> None:
    target = face_target([0.2, 0.2, 0.6, 0.7])
    outputs = random_outputs(2)
    alone = MultiBoxLoss()(tuple(t[:1] for t in outputs), [target], PRIORS)
    with_empty = MultiBoxLoss()(outputs, [target, no_faces()], PRIORS)
    for a, b in zip(alone, with_empty, strict=True):
        torch.testing.assert_close(a, b)


def test_faces_without_landmarks_give_zero_landmark_loss() -> None:
    terms = MultiBoxLoss()(random_outputs(1), [face_target([0.2, 0.2, 0.6, 0.7], False)], PRIORS)
    assert terms.loc > 0 and terms.landm == 0


def test_hard_negatives_seven_to_one() -> None:
    num = 20
    conf = torch.zeros(1, num, 2)
    conf[0, :, 1] = torch.arange(num, dtype=torch.float32)  # background loss grows with index
    positive = torch.zeros(1, num, dtype=torch.bool)
    positive[0, 19] = True  # the largest background loss, yet never a negative
    negatives = hard_negative_mask(conf, positive, negative_ratio=7)
    assert negatives[0].nonzero().flatten().tolist() == list(range(12, 19))


def test_hard_negatives_are_capped_and_per_image() -> None:
    conf = torch.randn(2, 10, 2, generator=torch.Generator().manual_seed(0))
    positive = torch.zeros(2, 10, dtype=torch.bool)
    positive[0, :3] = True  # 7 * 3 = 21 > A - 1 = 9: all 7 negatives of image 0
    negatives = hard_negative_mask(conf, positive, negative_ratio=7)
    assert negatives[0].tolist() == [False] * 3 + [True] * 7
    assert not negatives[1].any()  # no positives, no negatives


def test_classification_term_by_hand() -> None:
    targets = [face_target([0.3, 0.3, 0.7, 0.7])]
    outputs = random_outputs(1, seed=3)
    labels = match_batch(targets, PRIORS).labels
    positive = labels > 0
    num_pos = int(positive.sum())
    conf = outputs[1]
    background_loss = torch.logsumexp(conf, -1) - conf[..., 0]
    background_loss[positive] = -1
    hardest = background_loss[0].argsort(descending=True)[: 7 * num_pos]
    chosen = torch.cat([positive[0].nonzero().flatten(), hardest])
    expected = F.cross_entropy(conf[0, chosen], labels[0, chosen], reduction="sum") / num_pos
    torch.testing.assert_close(MultiBoxLoss()(outputs, targets, PRIORS).cls, expected)


def test_loss_decreases_when_optimising_the_outputs() -> None:
    targets = [face_target([0.1, 0.15, 0.45, 0.6]), face_target([0.5, 0.4, 0.8, 0.9], False)]
    outputs = [t.requires_grad_() for t in random_outputs(2, seed=1)]
    optimiser = torch.optim.Adam(outputs, lr=0.05)
    criterion = MultiBoxLoss()
    first = criterion(outputs, targets, PRIORS).total.item()
    for _ in range(50):
        optimiser.zero_grad()
        terms = criterion(outputs, targets, PRIORS)
        terms.total.backward()
        optimiser.step()
    last = criterion(outputs, targets, PRIORS)
    assert last.total.item() < 0.5 * first
    assert last.loc < 0.5 * criterion(random_outputs(2, seed=1), targets, PRIORS).loc
