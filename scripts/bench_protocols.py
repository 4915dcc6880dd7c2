"""`make bench`'s protocol comparison: the release server serving examples/models, driven by Triton's
perf_analyzer over REST (binary tensors, perf_analyzer's default) and over gRPC (raw contents), at
concurrency 1 and 64, on heavy_mlp and digits. Prints a markdown table of throughput and p50/p99 latency
as perf_analyzer measures them (client side, so the same yardstick for both protocols), and the server's
own overhead per request (its time minus queue and model time, kubeinfer_inference_overhead_seconds,
read from /metrics before and after each run): p50 interpolated within the histogram's buckets, and the
share of requests at most 0.1 ms.

    .cache/venv/bin/python scripts/bench_protocols.py target/release/kubeinfer-server
"""
import csv
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(server):
    http, grpc = free_port(), free_port()
    proc = subprocess.Popen(
        [server, "serve", "--model-repository", str(ROOT / "examples/models"), "--http-host", "127.0.0.1",
         "--http-port", str(http), "--grpc-port", str(grpc)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=1) as r:
                if r.status == 200:
                    return proc, http, grpc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not turn ready within 60 s")


def perf_analyzer(url, protocol, model, concurrency):
    venv = Path(sys.executable).parent.parent
    cudart = next((venv / "lib").iterdir()) / "site-packages/nvidia/cuda_runtime/lib"
    with tempfile.NamedTemporaryFile(suffix=".csv") as out:
        subprocess.run(
            [str(venv / "bin/perf_analyzer"), "-m", model, "-u", url, "-i", protocol,
             "--concurrency-range", str(concurrency), "--measurement-interval", "4000", "-s", "80", "-r", "6",
             "--percentile", "50", "-f", out.name],
            env={**os.environ, "LD_LIBRARY_PATH": str(cudart)}, check=True, capture_output=True)
        row = next(csv.DictReader(io.StringIO(Path(out.name).read_text())))
    return float(row["Inferences/Second"]), float(row["p50 latency"]) / 1000, float(row["p99 latency"]) / 1000


OVERHEAD = "kubeinfer_inference_overhead_seconds_bucket{"


def overhead_buckets(http, model, protocol):
    """Cumulative counts by upper bound of the overhead histogram of `model` (all versions) over `protocol`."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=10) as r:
        text = r.read().decode()
    counts = {}
    for line in text.splitlines():
        if not line.startswith(OVERHEAD):
            continue
        labels, value = line[len(OVERHEAD):].rsplit("} ", 1)
        fields = dict(part.split("=", 1) for part in labels.split(","))
        if fields["model"] == f'"{model}"' and fields["protocol"] == f'"{protocol}"':
            le = float(fields["le"].strip('"'))
            counts[le] = counts.get(le, 0) + float(value)
    return counts


def overhead(before, after):
    """(p50 in ms, share at most 0.1 ms) of the requests between two scrapes."""
    bounds = sorted(after)
    delta = [after[b] - before.get(b, 0) for b in bounds]
    total = delta[-1]
    if total == 0:
        return float("nan"), float("nan")
    lower, below = 0.0, 0.0
    for bound, count in zip(bounds, delta):
        if count >= total / 2:
            upper = bound if bound != float("inf") else lower
            p50 = lower + (upper - lower) * (total / 2 - below) / max(count - below, 1)
            break
        lower, below = bound, count
    return p50 * 1000, delta[bounds.index(0.0001)] / total


def main(server):
    proc, http, grpc = start(server)
    rows = []
    try:
        for model in ["heavy_mlp", "digits"]:
            for concurrency in [1, 64]:
                for protocol, url in [("http", f"127.0.0.1:{http}"), ("grpc", f"127.0.0.1:{grpc}")]:
                    label = "rest" if protocol == "http" else "grpc"
                    before = overhead_buckets(http, model, label)
                    measured = perf_analyzer(url, protocol, model, concurrency)
                    server_side = overhead(before, overhead_buckets(http, model, label))
                    rows.append((model, concurrency, protocol, *measured, *server_side))
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    print("| model | concurrency | protocol | req/s | p50 ms | p99 ms | server overhead p50 ms | overhead <= 0.1 ms |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for model, c, protocol, rps, p50, p99, over_p50, within in rows:
        name = "REST binary" if protocol == "http" else "gRPC"
        print(f"| {model} | {c} | {name} | {rps:,.0f} | {p50:.3f} | {p99:.3f} | {over_p50:.3f} | {within:.1%} |")
    by = {(m, c, p): rps for m, c, p, rps, *_ in rows}
    for model in ["heavy_mlp", "digits"]:
        ratio = by[(model, 64, "grpc")] / by[(model, 64, "http")]
        print(f"\n{model}: gRPC / REST binary at concurrency 64 = {ratio:.2f}")
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main(sys.argv[1])
