"""Shared fixtures. Expensive builds happen once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "resdsl" / "zoo"


@pytest.fixture(scope="session", autouse=True)
def _quiet_threads():
    """Two cores: keep torch from oversubscribing them when tests build big models."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def resnet50_net():
    import resdsl

    return resdsl.load(SPECS / "resnet50.res")


@pytest.fixture(scope="session")
def resnet50_model(resnet50_net):
    return resnet50_net.build().eval()


@pytest.fixture(scope="session")
def unet_net():
    import resdsl

    return resdsl.load(SPECS / "unet.res")


def pytest_configure(config):
    config.addinivalue_line("markers", "giant: every variant of a big table (opt in: RESDSL_GIANTS=1)")


def pytest_collection_modifyitems(config, items):
    """Giants run only when asked for (RESDSL_GIANTS=1): CI checks one variant per family."""
    if os.environ.get("RESDSL_GIANTS") == "1":
        return
    skip = pytest.mark.skip(reason="a giant: set RESDSL_GIANTS=1 to run it")
    for item in items:
        if "giant" in item.keywords:
            item.add_marker(skip)
