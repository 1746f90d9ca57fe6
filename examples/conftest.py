"""Slow, shared setup for the example suite: one session-scoped model."""

from __future__ import annotations

import os
import time

import pytest


class Model:
    """A stand-in for anything slow to build: a trained model, a parsed corpus."""

    def __init__(self) -> None:
        self.labels = ["cat", "dog"]
        self.vocabulary = {f"word{i}": i for i in range(200_000)}
        self.weights = [0.5] * 200_000


@pytest.fixture(scope="session")
def model() -> Model:
    """Build the model once per run; it takes about a second."""
    # Printed so that the output shows how often the model is built.
    print(f"building the model in process {os.getpid()}")  # noqa: T201
    time.sleep(1)
    return Model()
