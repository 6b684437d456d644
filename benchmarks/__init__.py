"""ddlib benchmarks: each ``bench_*.py`` module measures one workload against a reference
timed in the same process, and the runner prints one table and writes JSON."""
