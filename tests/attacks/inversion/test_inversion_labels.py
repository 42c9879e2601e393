"""Analytic label recovery from the output-layer gradient (iDLG for B = 1 victims, greedy counts for batches)."""
from __future__ import annotations

import torch

from fedleak.attacks.inversion import recover_labels
from fedleak.attacks.inversion.labels import batch_labels, idlg_labels
from fedleak.cases.victims import victim_case
from fedleak.fl.training import batch_gradients


def test_idlg_recovers_every_victim_label_even_behind_precode_dp_and_pruning(cnn, bundled32):
    idx = torch.cat([torch.nonzero(bundled32.y == c).flatten()[:2] for c in range(10)])  # 2 per class
    images, labels = bundled32.inputs(idx), bundled32.y[idx]
    for defenses in ("", "precode,dp,prune"):
        case = victim_case(cnn, "cnn", defenses, images, labels)
        recovered = recover_labels(case.model, case.observed.updates, case.knowledge.input_shape)
        assert torch.equal(recovered, labels), defenses


def test_idlg_weight_rows_alone_suffice_after_relu(cnn, bundled32):
    idx = torch.cat([torch.nonzero(bundled32.y == c).flatten()[2:4] for c in range(10)])
    case = victim_case(cnn, "cnn", "", bundled32.inputs(idx), bundled32.y[idx])
    assert torch.equal(idlg_labels(case.observed.updates["classifier.weight"]), bundled32.y[idx])


def test_batch_labels_recover_distinct_and_repeated_labels(cnn, bundled32):
    by_class = [torch.nonzero(bundled32.y == c).flatten() for c in range(10)]
    distinct = torch.stack([by_class[c][0] for c in (0, 2, 3, 5, 7, 9)])
    repeated = torch.cat([by_class[1][:3], by_class[4][:2], by_class[8][:1]])
    for idx in (distinct, repeated):
        grads = batch_gradients(cnn.train(), bundled32.inputs(idx), bundled32.y[idx])
        labels = batch_labels(grads["classifier.weight"], grads["classifier.bias"], len(idx))
        assert torch.equal(labels, bundled32.y[idx].sort().values)
