"""Launch arithmetic in one place: how many blocks of how many threads cover a shape (Sec. 3.7.1).

A CUDA kernel runs as a *grid* of *blocks*; every block holds the same number of
*threads*, and the hardware issues a block's threads in groups of 32 called *warps*.
Because the grid is a whole number of blocks, a launch usually starts a few more threads
than there are outputs; those threads find their index out of range and do nothing.
``plan_2d`` makes that arithmetic visible:

>>> p = plan_2d(100, 200)            # the chapter's 100 x 200 product, 16 x 16 blocks
>>> p.blocks, p.threads, p.work, p.n_threads
((13, 7), (16, 16), 20000, 23296)

``transactions_per_warp`` counts the memory segments a warp touches, which is what
coalescing is about; ``thread_layout`` runs a tiny kernel that reports, for each thread,
its block, thread, warp and lane numbers (on a GPU or on the simulator).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import config, cuda

WARP = 32  # threads that the hardware issues together (one instruction, 32 lanes)
TILE = 16  # edge of the square shared-memory tile in the tiled matmul (256 threads)

# The simulator runs one Python thread per CUDA thread, so there the elementwise
# kernels (which guard their index and work with any block size) use one-warp blocks;
# on a GPU a block of 8 warps keeps a multiprocessor busy.
SIMULATOR = bool(config.ENABLE_CUDASIM)
TPB_1D = WARP if SIMULATOR else 256  # threads per block for elementwise kernels
ROWS_COLS = (4, 8) if SIMULATOR else (8, 32)  # (rows, cols) block for row-wise 2-D kernels


def grid_1d(n: int, tpb: int = TPB_1D):
    """(blocks, threads) so that blocks * threads >= n, at least one block."""
    return max(1, (n + tpb - 1) // tpb), tpb


def grid_2d(rows: int, cols: int, tile: int = TILE):
    """((blocks_x, blocks_y), (tile, tile)) covering a rows x cols output, x along columns."""
    return (max(1, (cols + tile - 1) // tile), max(1, (rows + tile - 1) // tile)), (tile, tile)


def grid_rows_cols(rows: int, cols: int):
    """(blocks, threads) for a 2-D kernel over a (rows, cols) array that reads its index as
    ``j, i = cuda.grid(2)``: x runs along columns and y along rows.  CUDA numbers a block's
    threads x-fastest, so the 32 lanes of a warp take 32 neighbouring columns of one row:
    neighbouring addresses, one coalesced transaction per warp."""
    tr, tc = ROWS_COLS
    return (max(1, (cols + tc - 1) // tc), max(1, (rows + tr - 1) // tr)), (tc, tr)


@dataclass(frozen=True)
class LaunchPlan:
    """A 2-D launch: ``blocks`` (x, y) of ``threads`` (x, y), each thread owning ``per_thread``
    (rows, cols) outputs of a ``rows`` x ``cols`` result.  x runs along columns.

    Use it as ``kernel[plan.blocks, plan.threads](...)``.
    """

    rows: int
    cols: int
    blocks: tuple
    threads: tuple
    per_thread: tuple = (1, 1)

    @property
    def work(self) -> int:
        """Output entries to compute (rows * cols)."""
        return self.rows * self.cols

    @property
    def n_blocks(self) -> int:
        return self.blocks[0] * self.blocks[1]

    @property
    def threads_per_block(self) -> int:
        return self.threads[0] * self.threads[1]

    @property
    def n_threads(self) -> int:
        """Threads the launch starts, busy or not."""
        return self.n_blocks * self.threads_per_block

    @property
    def warps_per_block(self) -> int:
        return math.ceil(self.threads_per_block / WARP)

    @property
    def n_warps(self) -> int:
        return self.n_blocks * self.warps_per_block

    @property
    def busy_threads(self) -> int:
        """Threads that own at least one in-range output."""
        pr, pc = self.per_thread
        rows_t = math.ceil(self.rows / pr)
        cols_t = math.ceil(self.cols / pc)
        return rows_t * cols_t

    def describe(self) -> str:
        """One line of the arithmetic, e.g. for a notebook."""
        bx, by = self.blocks
        tx, ty = self.threads
        pr, pc = self.per_thread
        each = "1 output" if (pr, pc) == (1, 1) else f"a {pr} x {pc} tile of outputs"
        return (f"{self.rows} x {self.cols} = {self.work:,} outputs; each thread computes {each}; "
                f"grid {bx} x {by} = {self.n_blocks:,} blocks of {tx} x {ty} = "
                f"{self.threads_per_block} threads ({self.warps_per_block} "
                f"warp{'s' if self.warps_per_block != 1 else ''}) -> "
                f"{self.n_threads:,} threads launched, {self.busy_threads:,} busy, "
                f"{self.n_threads - self.busy_threads:,} idle")


def plan_2d(rows: int, cols: int, threads=(TILE, TILE), per_thread=(1, 1)) -> LaunchPlan:
    """The smallest grid of ``threads``-shaped blocks covering a rows x cols output.

    ``per_thread`` = (r, c) when each thread computes an r x c patch of outputs (the
    register-blocked matmul), so one block covers (threads_y * r) x (threads_x * c).
    """
    for name, v in (("rows", rows), ("cols", cols)):
        if int(v) != v or v < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
    tx, ty = threads
    pr, pc = per_thread
    bx = max(1, math.ceil(cols / (tx * pc)))
    by = max(1, math.ceil(rows / (ty * pr)))
    return LaunchPlan(int(rows), int(cols), (bx, by), (tx, ty), (pr, pc))


def transactions_per_warp(byte_offsets, segment: int = 32):
    """Distinct ``segment``-byte memory segments each warp touches for one load.

    ``byte_offsets[t]`` is the address (in bytes) that thread ``t`` reads; threads
    0..31 form warp 0, 32..63 warp 1, and so on.  A coalesced float32 load of 32
    neighbours touches 128 / 32 = 4 segments; a load with a large stride touches 32.

    >>> import numpy as np
    >>> int(transactions_per_warp(np.arange(32) * 4)[0])         # neighbours
    4
    >>> int(transactions_per_warp(np.arange(32) * 4 * 1000)[0])  # a column of a wide matrix
    32
    """
    off = np.asarray(byte_offsets, dtype=np.int64).ravel()
    n_warps = math.ceil(off.size / WARP)
    out = np.empty(n_warps, dtype=np.int64)
    for w in range(n_warps):
        out[w] = np.unique(off[w * WARP:(w + 1) * WARP] // segment).size
    return out


@cuda.jit
def _whoami(block, thread, warp, lane):
    """Each thread writes its own coordinates at its global index."""
    i = cuda.grid(1)
    if i < block.size:
        t = cuda.threadIdx.x
        block[i] = cuda.blockIdx.x
        thread[i] = t
        warp[i] = t // WARP
        lane[i] = t % WARP


def thread_layout(n: int, threads_per_block: int = TPB_1D) -> dict:
    """Run a 1-D launch over ``n`` items and report who handled each item.

    Returns host arrays ``block``, ``thread``, ``warp`` and ``lane`` of length ``n``
    (item i is handled by global thread i = block * threads_per_block + thread).
    """
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if int(threads_per_block) != threads_per_block or not 1 <= threads_per_block <= 1024:
        raise ValueError(f"threads_per_block must be an integer in [1, 1024], "
                         f"got {threads_per_block!r}")
    arrays = [cuda.device_array(int(n), dtype=np.int32) for _ in range(4)]
    blocks, tpb = grid_1d(int(n), int(threads_per_block))
    _whoami[blocks, tpb](*arrays)
    return dict(zip(("block", "thread", "warp", "lane"), (a.copy_to_host() for a in arrays)))
