import os

import pytest
import torch


def _load_dev_libs():
    # Development aid: MOEGS_DEV_LIBS=a.so:b.so loads extra op libraries built
    # outside setup.py (e.g. with torch.utils.cpp_extension.load) before tests.
    for path in filter(None, os.environ.get("MOEGS_DEV_LIBS", "").split(":")):
        torch.ops.load_library(path)


_load_dev_libs()


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
