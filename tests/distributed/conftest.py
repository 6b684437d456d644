"""One local Ray for the whole test run (it takes seconds to start), shut down at the end;
the finalizer checks that no Ray process outlives it.

Without Ray installed, the tests that need it (those using ``ray_session``) skip and say
how to install it; the Ray-free ones (Hogwild's threads, the simulator, the engine's
error messages) still run."""


import pytest

from ddlib import distributed


@pytest.fixture(scope="session")
def ray_session():
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install -e '.[distributed]')")
    psutil = pytest.importorskip("psutil")
    was = ray.is_initialized()
    distributed.start(num_cpus=2)
    procs = distributed.engine.ray_processes()
    yield ray
    if was:
        return
    distributed.shutdown()
    gone, alive = psutil.wait_procs(procs, timeout=20)
    for p in alive:       # only processes this fixture's Ray started, by pid
        p.kill()
    assert not alive, f"Ray processes outlived shutdown: {[(p.pid, p.name()) for p in alive]}"
    assert not distributed.engine.ray_processes()
