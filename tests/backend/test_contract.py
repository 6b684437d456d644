"""One backend contract: the reference backend's ``__all__`` lists are what every backend
provides, exactly; a package that lacks a declared kernel or exports an undeclared one is
refused when the backend is built."""

import importlib
import sys
import textwrap

import pytest

import ddlib
from ddlib.backend import (
    FAMILIES,
    HELPERS,
    Backend,
    BackendContractError,
    contract,
    cuda_unavailable_reason,
)


def _exports(package_name):
    out = {}
    for family in FAMILIES:
        mod = importlib.import_module(f"{package_name}.{family}")
        out[family] = tuple(mod.__all__)
    return out


def _assert_meets_contract(name, package_name):
    declared = contract()
    assert set(declared) == set(FAMILIES)
    exports = _exports(package_name)
    for family in FAMILIES:
        assert sorted(exports[family]) == sorted(declared[family]), (name, family)
    be = ddlib.get_backend(name)
    for family, names in declared.items():
        for k in names:
            assert getattr(be, k) is getattr(importlib.import_module(
                f"{package_name}.{family}"), k), (name, k)
    for h in HELPERS:
        assert callable(getattr(be, h))


def test_the_contract_is_the_reference_backends_lists():
    declared = contract()
    assert "loop" in FAMILIES
    assert {"softmax_xent_device", "take_rows", "pack_status"} <= set(declared["loop"])
    assert {"clip_values", "clip_norms", "axpy", "adam_step"} <= set(declared["optim"])
    # the cuda-only names of before are gone: clipping has one kernel pair everywhere
    assert not {"clip_value_device", "clip_norm_device"} & set(declared["optim"])
    ref = importlib.import_module("ddlib.backend.numpy_ref.optim")
    assert declared["optim"] == tuple(ref.__all__)
    declared["optim"] = ()  # a copy: the contract itself cannot be edited through it
    assert contract()["optim"] == tuple(ref.__all__)


@pytest.mark.parametrize("name, package", [("numpy", "ddlib.backend.numpy_ref"),
                                           ("cpu", "ddlib.backend.cpu")])
def test_host_backends_meet_the_contract(name, package):
    _assert_meets_contract(name, package)


@pytest.mark.cuda
def test_cuda_backend_meets_the_contract():
    reason = cuda_unavailable_reason()
    if reason is not None:
        pytest.skip(f"cuda backend unavailable: {reason}")
    _assert_meets_contract("cuda", "ddlib.backend.cuda")


# ------------------------------------------------------------------ a fake backend
@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """A factory of backend packages in tmp_path that re-export the reference, altered as
    asked: ``drop`` (family, name) leaves a declared kernel out, ``extra`` (family, name)
    adds an undeclared one, ``skip_family`` writes no module for that family.  The
    packages are forgotten (removed from sys.modules) afterwards."""
    made = []

    def make(pkg, *, drop=None, extra=None, skip_family=None):
        root = tmp_path / pkg
        root.mkdir()
        (root / "__init__.py").write_text(
            "from ddlib.backend.numpy_ref import asarray, empty, is_native, synchronize, "
            "to_numpy, zeros  # noqa: F401\n")
        for family in FAMILIES:
            if family == skip_family:
                continue
            names = list(contract()[family])
            if drop and drop[0] == family:
                names.remove(drop[1])
            body = textwrap.dedent(f"""
                from ddlib.backend.numpy_ref import {family} as _ref

                __all__ = {names!r}
                for _k in __all__:
                    globals()[_k] = getattr(_ref, _k)
            """)
            if extra and extra[0] == family:
                body += f"\n\ndef {extra[1]}(x):\n    return x\n\n\n__all__.append({extra[1]!r})\n"
            (root / f"{family}.py").write_text(body)
        made.append(pkg)
        importlib.invalidate_caches()
        return importlib.import_module(pkg)

    monkeypatch.syspath_prepend(str(tmp_path))
    yield make
    for key in [k for k in sys.modules if k.split(".")[0] in made]:
        del sys.modules[key]


def test_a_complete_fake_backend_is_accepted(fake_package):
    be = Backend("fake", fake_package("ddlib_fake_ok"))
    assert set(contract()["optim"]) <= set(be.kernels)
    assert be.take_rows is importlib.import_module("ddlib.backend.numpy_ref.loop").take_rows


def test_a_backend_missing_a_kernel_is_refused(fake_package):
    package = fake_package("ddlib_fake_missing", drop=("optim", "clip_norms"))
    with pytest.raises(BackendContractError,
                       match=r"backend 'fake'.*ddlib_fake_missing\.optim lacks declared "
                             r"kernel\(s\) clip_norms"):
        Backend("fake", package)


def test_a_backend_with_an_undeclared_kernel_is_refused(fake_package):
    package = fake_package("ddlib_fake_extra", extra=("loop", "warp_drive"))
    with pytest.raises(BackendContractError,
                       match=r"backend 'fake'.*ddlib_fake_extra\.loop exports undeclared "
                             r"name\(s\) warp_drive"):
        Backend("fake", package)


def test_a_backend_missing_a_family_or_a_helper_is_refused(fake_package, monkeypatch):
    package = fake_package("ddlib_fake_nofamily", skip_family="loop")
    with pytest.raises(BackendContractError, match=r"family 'loop' is missing.*take_rows"):
        Backend("fake", package)
    package = fake_package("ddlib_fake_nohelper")
    monkeypatch.delattr(package, "synchronize")
    with pytest.raises(BackendContractError, match=r"lacks helper\(s\) synchronize"):
        Backend("fake", package)


def test_a_declared_name_listed_but_not_defined_is_missing(fake_package, monkeypatch):
    package = fake_package("ddlib_fake_hollow")
    monkeypatch.delattr(importlib.import_module("ddlib_fake_hollow.core"), "fill")
    with pytest.raises(BackendContractError, match=r"core lacks declared kernel\(s\) fill"):
        Backend("fake", package)


def test_load_backend_reports_the_contract_error_and_caches_nothing(fake_package,
                                                                     monkeypatch):
    """Backend selection goes through the same check: a broken package is never loaded."""
    from ddlib import backend as backend_mod

    fake_package("ddlib_fake_sel", drop=("loop", "pack_status"))
    monkeypatch.setitem(backend_mod._MODULES, "numpy", "../ddlib_fake_sel")
    monkeypatch.setattr(backend_mod.importlib, "import_module",
                        _redirect(backend_mod.importlib.import_module,
                                  "ddlib.backend.../ddlib_fake_sel", "ddlib_fake_sel"))
    monkeypatch.setattr(backend_mod, "_loaded", {})
    with pytest.raises(BackendContractError, match=r"backend 'numpy'.*pack_status"):
        backend_mod.load_backend("numpy")
    assert "numpy" not in backend_mod._loaded


def _redirect(import_module, alias, real):
    def imp(name, *a, **k):
        return import_module(real if name == alias else name, *a, **k)

    return imp
