"""Shared test set-up: the Triton interpreter in-process; the gpu tier skips without CUDA."""

from __future__ import annotations

import os

import pytest

# In-process kernels in the interpret tier need the interpreter chosen before triton is
# imported; workers get their own setting from the harness.
os.environ["TRITON_INTERPRET"] = "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip)
