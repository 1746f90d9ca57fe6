"""Tests that change the shared model, and tests that expect it untouched."""

from __future__ import annotations


def test_add_label(model):
    model.labels.append("bird")
    assert model.labels == ["cat", "dog", "bird"]


def test_labels_are_pristine(model):
    assert model.labels == ["cat", "dog"]


def test_prune_vocabulary(model):
    for word in list(model.vocabulary)[::2]:
        del model.vocabulary[word]
    assert len(model.vocabulary) == 100_000


def test_vocabulary_is_complete(model):
    assert len(model.vocabulary) == 200_000


def test_fine_tune(model):
    model.weights[0] = 0.9
    assert model.weights[0] == 0.9


def test_weights_start_equal(model):
    assert set(model.weights) == {0.5}
