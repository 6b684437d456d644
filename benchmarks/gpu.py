"""GPU benchmark for Sec. 3.7.1, for a machine with an NVIDIA GPU (``make bench-gpu``).

    python -m benchmarks.gpu                  # full run, writes benchmarks/results/gpu-<device>.json
    python -m benchmarks.gpu --quick          # sizes up to 2048, 10 M parameters (a few minutes less)
    NUMBA_ENABLE_CUDASIM=1 python -m benchmarks.gpu --smoke --json /tmp/x.json
                                              # tiny sizes on the simulator: exercises every code
                                              # path of this script; its times mean nothing

What it measures (float32 throughout, TF32 off in cuBLAS):

* the three matmuls of ``ddlib.backend.cuda.matmul`` (naive, tiled, register-blocked) and
  the backend's own choice, for n = k = m from 256 to 8192, against cuBLAS SGEMM through
  CuPy or PyTorch when either is installed (rows say so when neither is);
* the device's copy bandwidth (a device-to-device copy of 400 MB: bytes read + written per
  second), then an elementwise kernel (ReLU) and the fused Adam step on 100 million
  parameters as a fraction of it (Adam reads w, F, A, g and writes w, F, A: 28 bytes each);
* one training step of the 784-512-512-10 ReLU MLP at batch 1024 with momentum, with the
  data on the GPU (``ddlib.device.DeviceTrainer``) against the cpu backend on this host.

Nothing touches the GPU at import time; without a GPU the script exits with a message.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import pathlib
import platform
import re
import sys

import numpy as np

HERE = pathlib.Path(__file__).parent
SIZES = [256, 512, 1024, 2048, 4096, 8192]
QUICK_SIZES = [256, 512, 1024, 2048]
N_PARAMS = 100_000_000
MLP = (784, 512, 512, 10)
MLP_BATCH = 1024

TARGETS = {
    "matmul": 0.30,  # best of tiled / blocked vs cuBLAS SGEMM at 4096^3
    "adam": 0.70,  # fused Adam vs measured copy bandwidth
}


class NoGPU(RuntimeError):
    """This machine cannot run the benchmark."""


def _simulator():
    from numba import config

    return bool(config.ENABLE_CUDASIM)


def _check_gpu(smoke):
    from ddlib.backend import cuda_unavailable_reason

    sim = _simulator()
    if smoke and not sim:
        raise NoGPU("--smoke runs on the CUDA simulator: start Python with NUMBA_ENABLE_CUDASIM=1")
    if sim and not smoke:
        raise NoGPU("NUMBA_ENABLE_CUDASIM=1 is set: the simulator is not a GPU and its times "
                    "mean nothing; unset it (or pass --smoke to only exercise the script)")
    reason = cuda_unavailable_reason()
    if reason is not None:
        raise NoGPU(f"this benchmark needs an NVIDIA GPU: {reason}")


# ------------------------------------------------------------------ small helpers
def _timer(smoke):
    from numba import cuda

    from .timing import bench

    def t(fn, repeat=5, number=None):
        if smoke:
            repeat, number = 1, 1
        return bench(fn, repeat=repeat, number=number, min_time=0.1, sync=cuda.synchronize)

    return t


def device_info():
    """Name, compute capability and sizes of the current GPU, plus library versions."""
    from numba import cuda

    import ddlib

    info = {"python": sys.version.split()[0], "ddlib": ddlib.__version__,
            "host": platform.node(), "host_cpus": os.cpu_count()}
    try:
        import numba

        info["numba"] = numba.__version__
        from importlib.metadata import version

        info["numba_cuda"] = version("numba-cuda")
    except Exception:  # metadata is informative only
        pass
    if _simulator():
        info.update(device="CUDA simulator", compute_capability=None)
        return info
    dev = cuda.get_current_device()
    name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    info.update(device=name, compute_capability=list(dev.compute_capability),
                multiprocessors=dev.MULTIPROCESSOR_COUNT)
    try:
        free, total = cuda.current_context().get_memory_info()
        info["memory_gib"] = round(total / 2**30, 1)
    except Exception:
        pass
    try:
        info["driver"] = ".".join(map(str, cuda.cudadrv.driver.driver.get_version()))
        info["runtime"] = ".".join(map(str, cuda.runtime.get_version()))
    except Exception:
        pass
    return info


def _cublas():
    """(name, matmul(a_host, b_host) -> timed callable factory) through CuPy or PyTorch."""
    try:
        import cupy

        os.environ.setdefault("CUPY_TF32", "0")  # CuPy uses TF32 only when this is 1

        def make(a, b):
            da, db = cupy.asarray(a), cupy.asarray(b)
            out = cupy.empty((a.shape[0], b.shape[1]), dtype=a.dtype)

            def run():
                cupy.matmul(da, db, out=out)

            return run, lambda: cupy.asnumpy(out), cupy.cuda.Device().synchronize

        return f"cupy {cupy.__version__}", make
    except Exception:
        pass
    try:
        import torch

        if not torch.cuda.is_available():
            raise ImportError
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")

        def make(a, b):
            da, db = torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda()
            out = torch.empty((a.shape[0], b.shape[1]), dtype=da.dtype, device="cuda")

            def run():
                torch.matmul(da, db, out=out)

            return run, lambda: out.cpu().numpy(), torch.cuda.synchronize

        return f"torch {torch.__version__}", make
    except Exception:
        return None, None


# ------------------------------------------------------------------ workloads
def _cublas_reference(lib, make, a, b, name, timer, rows):
    """Time cuBLAS on (a, b) when a binding is present: appends its row to ``rows`` and
    returns (seconds, product on the host), or (None, None) without one."""
    if make is None:
        return None, None
    run, fetch, sync = make(a, b)
    run()
    sync()
    c_ref = fetch()
    t_ref = timer(run)
    flops = 2.0 * a.shape[0] * a.shape[1] * b.shape[1]
    rows.append(dict(workload=name, variant=f"cuBLAS SGEMM ({lib}, TF32 off)",
                     seconds=t_ref, tflops=flops / t_ref / 1e12))
    return t_ref, c_ref


def bench_matmul(sizes, timer, smoke):
    from numba import cuda

    from ddlib.backend.cuda import matmul as mm

    rows = []
    lib, make = (None, None) if smoke else _cublas()
    rng = np.random.default_rng(0)
    for n in sizes:
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        da, db = cuda.to_device(a), cuda.to_device(b)
        out = cuda.device_array((n, n), dtype=np.float32)
        flops = 2.0 * n ** 3
        name = f"matmul {n}^3 float32"
        t_ref, c_ref = _cublas_reference(lib, make, a, b, name, timer, rows)
        if make is None and n == sizes[0]:
            rows.append(dict(workload=name, variant="cuBLAS", seconds=None,
                             note="neither CuPy nor PyTorch (with CUDA) is installed: "
                                  "no cuBLAS reference"))
        best = None
        for method in ("naive", "tiled", "blocked", "auto"):
            def run(method=method, da=da, db=db, out=out):
                mm.matmul(da, db, out=out, method=method)

            repeat = 3 if (method == "naive" and n >= 4096) else 5
            t = timer(run, repeat=repeat)
            row = dict(workload=name, variant=f"ddlib {method}"
                       + (f" (= {mm.choose_method(n, n, n, np.float32)})" if method == "auto" else ""),
                       seconds=t, tflops=flops / t / 1e12)
            check = c_ref if c_ref is not None else (a.astype(np.float64) @ b if n <= 2048 else None)
            if check is not None:
                got = out.copy_to_host()
                row["max_rel_err"] = float(np.max(np.abs(got - check)) / np.max(np.abs(check)))
            if t_ref is not None:
                row.update(ratio=t_ref / t, reference="cuBLAS (fraction of its speed)")
                if method in ("tiled", "blocked"):
                    best = max(best or 0.0, t_ref / t)
            rows.append(row)
        if n == 4096 and best is not None:
            rows.append(dict(workload=name, variant="best of tiled/blocked vs cuBLAS",
                             ratio=best, target=f">= {TARGETS['matmul']:.2f}",
                             ok=best >= TARGETS["matmul"]))
    return rows


#: register-blocking geometries timed against cuBLAS at SWEEP_N^3 (the default first)
SWEEP_N = 4096
SWEEP = [((128, 128, 8, 8, 8), True), ((128, 128, 8, 8, 8), False), ((128, 128, 16, 8, 8), True),
         ((128, 64, 8, 8, 8), True), ((64, 64, 8, 4, 4), True), ((64, 64, 16, 4, 4), True)]


def bench_blocked_sweep(n, timer, smoke):
    """The register-blocked kernel's knobs: block tile (bm, bn, bk), thread patch (tm, tn)
    and the register prefetch of the next k-slab, each against cuBLAS at n^3."""
    from numba import cuda, float32

    from ddlib.backend.cuda import matmul as mm

    lib, make = (None, None) if smoke else _cublas()
    configs = [((8, 8, 4, 2, 2), True), ((8, 8, 4, 2, 2), False)] if smoke else SWEEP
    rng = np.random.default_rng(1)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    da, db = cuda.to_device(a), cuda.to_device(b)
    out = cuda.device_array((n, n), dtype=np.float32)
    name = f"blocked sweep {n}^3 float32"
    flops = 2.0 * n ** 3
    rows = []
    t_ref, c_ref = _cublas_reference(lib, make, a, b, name, timer, rows)
    default = mm.DEFAULT_CONFIG[np.dtype(np.float32)]
    for fields, prefetch in configs:
        cfg = mm.BlockConfig(*fields).validate()
        kernel = mm._make_blocked(float32, cfg, prefetch=prefetch)
        plan = mm.launch_plan("blocked", n, n, config=cfg)

        def run(kernel=kernel, plan=plan):
            kernel[plan.blocks, plan.threads](da, db, out)

        t = timer(run)
        label = (f"blocked bm,bn,bk={cfg.bm},{cfg.bn},{cfg.bk} tm,tn={cfg.tm},{cfg.tn}"
                 f"{' prefetch' if prefetch else ''}{' (default)' if cfg == default and prefetch else ''}")
        row = dict(workload=name, variant=label, seconds=t, tflops=flops / t / 1e12)
        check = c_ref if c_ref is not None else a.astype(np.float64) @ b
        got = out.copy_to_host()
        row["max_rel_err"] = float(np.max(np.abs(got - check)) / np.max(np.abs(check)))
        if t_ref is not None:
            row.update(ratio=t_ref / t, reference="cuBLAS (fraction of its speed)")
        rows.append(row)
    return rows


def copy_bandwidth(n, timer):
    """Bytes per second of a device-to-device copy (read + write) of n float32."""
    from numba import cuda

    src = cuda.device_array(n, dtype=np.float32)
    dst = cuda.device_array(n, dtype=np.float32)
    from ddlib.backend.cuda.core import fill

    fill(src, 1.0)
    t = timer(lambda: dst.copy_to_device(src))
    return 2 * src.nbytes / t, t


def bench_memory_bound(n, timer):
    """ReLU and the fused optimizer step on n float32 parameters vs copy bandwidth."""
    from numba import cuda

    import ddlib
    from ddlib.backend.cuda import core
    from ddlib.backend.cuda import optim as cuda_optim

    bw, t_copy = copy_bandwidth(n, timer)
    rows = [dict(workload=f"memory-bound, {n:,} float32", variant="device-to-device copy",
                 seconds=t_copy, gbps=bw / 1e9, note="the yardstick (bytes read + written / s)")]
    x = cuda.device_array(n, dtype=np.float32)
    core.fill(x, -0.5)
    y = cuda.device_array(n, dtype=np.float32)
    t = timer(lambda: core.act_forward("relu", x, out=y))
    rows.append(dict(workload=rows[0]["workload"], variant="elementwise ReLU (8 B/element)",
                     seconds=t, gbps=8 * n / t / 1e9, ratio=(8 * n / t) / bw,
                     reference="copy bandwidth"))
    arrays = [cuda.device_array(n, dtype=np.float32) for _ in range(4)]
    for arr, v in zip(arrays, (0.1, 0.0, 0.0, 0.01)):
        core.fill(arr, v)
    w, f, a, g = arrays
    be = ddlib.get_backend("cuda")
    bad = be.zeros(1, np.int64)  # a non-finite counter, as Optimizer hands each kernel
    if hasattr(cuda_optim, "adam_step"):
        label, nbytes = "fused Adam", 28 * n
        public = lambda: cuda_optim.adam_step(w, f, a, g, 1e-3, 0.9, 0.999, 1e-8)  # noqa: E731
        flagged = lambda: cuda_optim.adam_step(w, f, a, g, 1e-3, 0.9, 0.999, 1e-8,  # noqa: E731
                                               bad=bad)
    else:
        label, nbytes = "fused momentum", 20 * n
        public = lambda: cuda_optim.momentum_step(w, f, g, 1e-3, 0.9)  # noqa: E731
        flagged = lambda: cuda_optim.momentum_step(w, f, g, 1e-3, 0.9, bad=bad)  # noqa: E731
    # (the labels are those of the committed results, so runs stay comparable)
    for variant, fn in ((f"{label}, flag kept on device (as DeviceTrainer runs it)", flagged),
                        (f"{label}, public *_step (copies its flag back)", public)):
        t = timer(fn)
        row = dict(workload=rows[0]["workload"], variant=variant, seconds=t,
                   gbps=nbytes / t / 1e9, ratio=(nbytes / t) / bw, reference="copy bandwidth")
        if "DeviceTrainer" in variant:
            row.update(target=f">= {TARGETS['adam']:.2f}", ok=(nbytes / t) / bw >= TARGETS["adam"])
        rows.append(row)
    return rows, bw


def bench_mlp(sizes, batch, timer):
    """One training step (forward, loss, backward, momentum) on cuda and on cpu."""
    import ddlib
    from ddlib import layers, losses, optim, train
    from ddlib.device import DeviceTrainer, to_device

    rng = np.random.default_rng(0)
    X = rng.standard_normal((batch, sizes[0]), dtype=np.float32)
    y = rng.integers(0, sizes[-1], size=batch)
    name = f"mlp step {'-'.join(map(str, sizes))} b{batch} float32"
    with ddlib.use_backend("cpu"):
        net = layers.mlp(list(sizes), activation="relu", rng=0, dtype=np.float32)
        opt = optim.Optimizer(net, optim.momentum(0.01, 0.9))
        loss = losses.SoftmaxCrossEntropy()

        def cpu_step():
            with ddlib.use_backend("cpu"):
                train.train_step(net, loss, opt, X, y)

        t_cpu = timer(cpu_step)
    gnet = to_device(layers.mlp(list(sizes), activation="relu", rng=0, dtype=np.float32))
    with ddlib.use_backend("cuda"):
        gopt = optim.Optimizer(gnet, optim.momentum(0.01, 0.9))
    trainer = DeviceTrainer(gnet, losses.SoftmaxCrossEntropy(), gopt)
    Xd, yd = trainer.put_data(X, y)
    t_dev = timer(lambda: trainer.step(Xd, yd))
    t_loss = timer(lambda: trainer.step(Xd, yd, return_loss=True))
    t_mm = timer(_step_products(sizes, batch))
    from ddlib.backend.cuda import POOL_STATUS, pool

    t_nopool = None
    if POOL_STATUS == "installed":
        pool.set_enabled(False)  # the same step with numba's own allocator
        try:
            gc.collect()
            t_nopool = timer(lambda: trainer.step(Xd, yd))
        finally:
            pool.set_enabled(True)
    t_launch = timer(_empty_launch())
    cpu_threads = int(os.environ.get("NUMBA_NUM_THREADS", os.cpu_count() or 1))
    return [
        dict(workload=name, variant=f"cpu backend ({cpu_threads} threads, this host)",
             seconds=t_cpu),
        dict(workload=name, variant="cuda, DeviceTrainer.step (nothing copied back)",
             seconds=t_dev, ratio=t_cpu / t_dev, reference="speedup over the cpu backend",
             note="the non-finite counters stay on the GPU"),
        dict(workload=name, variant="cuda, DeviceTrainer.step(return_loss=True)",
             seconds=t_loss, ratio=t_cpu / t_loss, reference="speedup over the cpu backend"),
        dict(workload=name, variant="cuda, the step's matrix products alone",
             seconds=t_mm, ratio=t_mm / t_dev, reference="fraction of DeviceTrainer.step",
             note="the rest is elementwise kernels and launch overhead"),
        dict(workload=name, variant="cuda, one launch of an empty kernel",
             seconds=t_launch, ratio=t_launch / t_dev, reference="fraction of DeviceTrainer.step",
             note="numba's cost per kernel launch, paid ~20 times a step"),
    ] + ([] if t_nopool is None else [
        dict(workload=name, variant="cuda, DeviceTrainer.step, numba's allocator (pool off)",
             seconds=t_nopool, ratio=t_cpu / t_nopool, reference="speedup over the cpu backend",
             note=f"ddlib's pool makes the step {t_nopool / t_dev:.2f}x faster")])


def _empty_launch():
    from numba import cuda

    @cuda.jit
    def empty(x):
        pass

    x = cuda.device_array(1, np.float32)

    def run():
        empty[1, 32](x)

    return run


def _step_products(sizes, batch):
    """A callable launching the products of one training step as the cuda backend does:
    x W per layer forward, then x^T g (weight gradient) and g W^T (except at the first
    layer) backward, each through ``matmul(method='auto')``."""
    from numba import cuda

    from ddlib.backend.cuda import matmul as mm

    rng = np.random.default_rng(0)
    dev = lambda *shape: cuda.to_device(rng.standard_normal(shape, dtype=np.float32))  # noqa: E731
    acts = [dev(batch, d) for d in sizes]  # layer inputs / outputs
    Ws = [dev(d_in, d_out) for d_in, d_out in zip(sizes[:-1], sizes[1:])]
    launches = []
    for l, W in enumerate(Ws):
        launches.append((acts[l], W, acts[l + 1], {}))
    for l in reversed(range(len(Ws))):
        g = acts[l + 1]
        launches.append((acts[l], g, cuda.device_array(Ws[l].shape, np.float32),
                         {"trans_a": True}))
        if l > 0:
            launches.append((g, Ws[l], cuda.device_array(acts[l].shape, np.float32),
                             {"trans_b": True}))

    def run():
        for a, b, out, kw in launches:
            mm.matmul(a, b, out=out, **kw)

    return run


# ------------------------------------------------------------------ driver
def _slug(name):
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu"


def _fmt(row):
    sec = row.get("seconds")
    t = "" if sec is None else (f"{sec * 1e3:10.3f} ms" if sec < 1 else f"{sec:10.3f} s ")
    extra = ""
    if row.get("tflops") is not None:
        extra = f"{row['tflops']:8.2f} TFLOP/s"
    elif row.get("gbps") is not None:
        extra = f"{row['gbps']:8.1f} GB/s"
    r = "" if row.get("ratio") is None else f"{row['ratio']:7.3f}"
    ok = {True: "ok", False: "MISS", None: ""}[row.get("ok")]
    return (f"{row['workload'][:34]:34s} {row['variant'][:58]:58s} {t:>13s} {extra:>16s} "
            f"{r:>8s} {row.get('target', ''):>7s} {ok:>4s} {row.get('note', '')}")


def run(quick=False, smoke=False, path=None):
    """All workloads; returns (meta, rows).

    With ``path``, the JSON is rewritten after every section, so a run cut short (a time
    limit on a lent machine, say) still leaves what it measured.  A section that raises is
    recorded as an ``error`` row and the next section still runs.
    """
    timer = _timer(smoke)
    meta = device_info()
    meta["date"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    meta["mode"] = "smoke (simulator)" if smoke else ("quick" if quick else "full")
    from ddlib.backend.cuda import POOL_STATUS

    meta["memory_pool"] = POOL_STATUS
    sizes = [5] if smoke else (QUICK_SIZES if quick else SIZES)
    n_params = 64 if smoke else (10_000_000 if quick else N_PARAMS)
    mlp, batch = ((6, 4, 3), 4) if smoke else (MLP, MLP_BATCH)
    rows = []
    print(f"device: {meta.get('device')}  ({meta['mode']})", flush=True)
    sections = (("matmul", lambda: bench_matmul(sizes, timer, smoke)),
                ("blocked sweep", lambda: bench_blocked_sweep(5 if smoke else SWEEP_N, timer, smoke)),
                ("memory-bound", lambda: bench_memory_bound(n_params, timer)[0]),
                ("mlp", lambda: bench_mlp(mlp, batch, timer)))
    for title, section in sections:
        try:
            for row in section():
                rows.append(row)
                print(_fmt(row), flush=True)
        except Exception as exc:  # keep the other sections' figures
            row = dict(workload=title, variant="error", error=f"{type(exc).__name__}: {exc}")
            rows.append(row)
            print(f"{title}: {row['error']}", file=sys.stderr, flush=True)
        if path is not None:
            _write(path, meta, rows)
    return meta, rows


def _write(path, meta, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=float) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (up to 2048, 10 M params)")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny sizes on the CUDA simulator (checks the script, not the GPU)")
    ap.add_argument("--json", default=None,
                    help="output path (default benchmarks/results/gpu-<device>.json)")
    args = ap.parse_args(argv)
    try:
        _check_gpu(args.smoke)
    except NoGPU as exc:
        print(f"benchmarks.gpu: {exc}", file=sys.stderr)
        return 2
    import ddlib.backend.cuda  # noqa: F401  (before any CUDA context: installs ddlib's memory pool)

    name = "smoke" if args.smoke else device_info().get("device", "gpu")
    path = pathlib.Path(args.json) if args.json else HERE / "results" / f"gpu-{_slug(name)}.json"
    meta, rows = run(quick=args.quick, smoke=args.smoke, path=path)
    print(f"wrote {path}")
    return 1 if any(r.get("variant") == "error" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
