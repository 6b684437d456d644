"""Doctests: ``make test`` runs the examples written in every ddlib module
(``--doctest-modules``).  The cuda backend's modules compile numba.cuda kernels when they
are imported, so their examples run in the simulator job (``make test-cudasim``) and on
a GPU: there they carry the ``cuda`` marker, and elsewhere they are not collected."""

import os

import pytest

_CUDA_DIR = os.path.join("ddlib", "backend", "cuda")

collect_ignore = [] if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" else [_CUDA_DIR]


def pytest_collection_modifyitems(items):
    for item in items:
        if isinstance(item, pytest.DoctestItem) and _CUDA_DIR in str(item.path):
            item.add_marker(pytest.mark.cuda)
