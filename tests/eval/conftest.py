"""Fixtures for the evaluation tests: a synthetic dataset in every format, oracle pipelines."""

from __future__ import annotations

import pytest

from segzero_tool.testing.synthetic import make_synthetic_samples


@pytest.fixture(scope="session")
def synthetic():
    """10 samples over three image sizes; ``syn009`` has an empty ground truth."""
    return make_synthetic_samples(10, sizes=((64, 48), (96, 64), (48, 80)), empty=1, seed=0)
