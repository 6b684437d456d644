"""Launch arithmetic (no GPU needed) and the thread-layout kernel (cuda)."""

import math

import numpy as np
import pytest

from ddlib.backend.cuda.launch import WARP, plan_2d, transactions_per_warp


def test_chapter_example_launch_arithmetic():
    # Sec. 3.7.1: a 100 x 50 by 50 x 200 product has 100 * 200 outputs, one thread each
    p = plan_2d(100, 200, threads=(16, 16))
    assert p.work == 100 * 200
    assert p.blocks == (math.ceil(200 / 16), math.ceil(100 / 16))
    assert p.n_threads == p.blocks[0] * p.blocks[1] * 256
    assert p.busy_threads == 20000 and p.n_threads - p.busy_threads == p.n_threads - 20000
    assert p.warps_per_block == 256 // WARP and p.n_warps == p.n_blocks * 8
    # blocks of 8 x 4 tile 200 x 100 exactly: 20,000 threads, none idle, 625 one-warp blocks
    q = plan_2d(100, 200, threads=(8, 4))
    assert (q.n_threads, q.busy_threads, q.n_warps) == (20000, 20000, 625)
    assert "20,000 outputs" in q.describe() and "0 idle" in q.describe()


def test_per_thread_tiles_shrink_the_grid():
    p = plan_2d(4096, 4096, threads=(16, 16), per_thread=(8, 8))
    assert p.blocks == (32, 32)
    assert p.busy_threads == (4096 // 8) * (4096 // 8)
    odd = plan_2d(17, 30, threads=(4, 2), per_thread=(2, 4))
    assert odd.blocks == (math.ceil(30 / 16), math.ceil(17 / 4))
    assert odd.busy_threads == math.ceil(17 / 2) * math.ceil(30 / 4)


@pytest.mark.parametrize("rows, cols", [(-1, 3), (2.5, 3)])
def test_plan_rejects_bad_sizes(rows, cols):
    with pytest.raises(ValueError, match="rows must be a non-negative integer"):
        plan_2d(rows, cols)


def test_transactions_count_coalescing():
    itemsize = 4
    row_major = np.arange(64) * itemsize  # 64 threads read neighbours: 2 warps
    np.testing.assert_array_equal(transactions_per_warp(row_major), [4, 4])
    # threads walking down a column of a 1000-wide float32 matrix: one segment each
    column = np.arange(32) * 1000 * itemsize
    np.testing.assert_array_equal(transactions_per_warp(column), [32])
    # every thread of a warp reading the same number is one (broadcast) segment
    np.testing.assert_array_equal(transactions_per_warp(np.zeros(32)), [1])


@pytest.mark.cuda
def test_thread_layout_reports_who_ran_each_item(cuda_be):
    from ddlib.backend.cuda.launch import thread_layout

    lay = thread_layout(70, threads_per_block=32)
    i = np.arange(70)
    np.testing.assert_array_equal(lay["block"], i // 32)
    np.testing.assert_array_equal(lay["thread"], i % 32)
    np.testing.assert_array_equal(lay["warp"], np.zeros(70))
    np.testing.assert_array_equal(lay["lane"], i % 32)
    lay = thread_layout(5, threads_per_block=96)
    np.testing.assert_array_equal(lay["warp"], [0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="threads_per_block"):
        thread_layout(5, threads_per_block=2048)
