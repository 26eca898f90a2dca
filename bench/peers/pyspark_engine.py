"""The engine workloads on Apache Spark's RDD API (PySpark, local[2]), the peer of BENCHMARKS.md.

Usage: python pyspark_engine.py WORKLOAD SIZE [WORDS_FILE]
Prints one JSON object like `driver bench engine --json`. Needs pyspark and numpy (install them
into a virtualenv outside the repository); never used by tests.
"""
import json
import operator
import os
import resource
import sys
import tempfile
import time

import numpy as np
from pyspark import SparkConf, SparkContext


def vm_hwm_bytes(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def peak_rss_bytes(sc):
    """The Python driver's and the JVM's high-water marks (the JVM is read before it stops;
    Python worker processes are not counted)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    proc = getattr(sc._gateway, "proc", None)
    return own + (vm_hwm_bytes(proc.pid) if proc is not None else 0)


def main():
    workload, size = sys.argv[1], int(sys.argv[2])
    # Spark's Python workers must use this interpreter (and its numpy), not the system one.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    t0 = time.time()
    conf = SparkConf().setMaster("local[2]").setAppName("discnn-peer").set("spark.ui.enabled", "false")
    sc = SparkContext(conf=conf)
    sc.setLogLevel("ERROR")
    context_s = time.time() - t0
    detail = {"context_s": context_s}
    t_setup = time.time()
    if workload == "w0":
        r = sc.range(0, 8000, 1, 8).cache()
        r.count()
        setup = time.time() - t_setup
        t = time.time()
        for _ in range(size):
            r.count()
        wall = time.time() - t
        units = size
    elif workload == "w1":
        path = sys.argv[3]
        out = os.path.join(tempfile.mkdtemp(), "counts")
        setup = time.time() - t_setup
        t = time.time()
        counts = (
            sc.textFile(path, 2)
            .flatMap(lambda line: line.split())
            .map(lambda w: (w, 1))
            .reduceByKey(operator.add, 2)
        )
        counts.sortBy(lambda kv: (-kv[1], kv[0]), True, 2).map(lambda kv: f"{kv[0]}\t{kv[1]}").saveAsTextFile(out)
        wall = time.time() - t
        units = 1
    elif workload == "w2":
        def block(index, _it):
            rng = np.random.default_rng(7 + index)
            n = size // 8
            x = rng.random((n, 10)) * 2 - 1
            y = (x @ (np.arange(10) - 4.5) > 0).astype(np.float64)
            yield x, y

        points = sc.parallelize(range(8), 8).mapPartitionsWithIndex(block).cache()
        points.count()
        setup = time.time() - t_setup
        t = time.time()
        w = np.zeros(10)
        for _ in range(10):
            g, n = points.map(
                lambda b: (((1 / (1 + np.exp(-(b[0] @ w)))) - b[1]) @ b[0], len(b[1]))
            ).reduce(lambda a, b: (a[0] + b[0], a[1] + b[1]))
            w -= g / n
        wall = time.time() - t
        units = 10
    elif workload in ("w3-group", "w3-sort"):
        keys = 100_000

        def pair(i):
            h = ((i * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF)
            h = ((h << 29) | (h >> 35)) & 0xFFFFFFFFFFFFFFFF
            return (h % keys, i)

        pairs = sc.range(0, size, 1, 2).map(pair).cache()
        pairs.count()
        setup = time.time() - t_setup
        t = time.time()
        if workload == "w3-group":
            pairs.groupByKey(2).count()
        else:
            pairs.sortByKey(True, 2).count()
        wall = time.time() - t
        units = 1
    else:
        raise SystemExit(f"unknown workload {workload}")
    peak = peak_rss_bytes(sc)
    sc.stop()
    print(json.dumps({
        "workload": workload, "master": "local[2]", "size": size, "wall_s": wall, "setup_s": setup,
        "per_unit_ms": wall * 1000 / units, "peak_rss_bytes": peak, "detail": detail,
    }))


if __name__ == "__main__":
    main()
