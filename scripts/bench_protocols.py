"""`make bench`'s protocol comparison: the release server serving examples/models, driven by Triton's
perf_analyzer over REST (binary tensors, perf_analyzer's default) and over gRPC (raw contents), at
concurrency 1 and 64, on heavy_mlp and digits. Prints a markdown table of throughput and p50/p99 latency
as perf_analyzer measures them (client side, so the same yardstick for both protocols).

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


def main(server):
    proc, http, grpc = start(server)
    rows = []
    try:
        for model in ["heavy_mlp", "digits"]:
            for concurrency in [1, 64]:
                for protocol, url in [("http", f"127.0.0.1:{http}"), ("grpc", f"127.0.0.1:{grpc}")]:
                    rows.append((model, concurrency, protocol, *perf_analyzer(url, protocol, model, concurrency)))
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    print("| model | concurrency | protocol | req/s | p50 ms | p99 ms |")
    print("|---|---:|---|---:|---:|---:|")
    for model, c, protocol, rps, p50, p99 in rows:
        name = "REST binary" if protocol == "http" else "gRPC"
        print(f"| {model} | {c} | {name} | {rps:,.0f} | {p50:.3f} | {p99:.3f} |")
    by = {(m, c, p): rps for m, c, p, rps, _, _ in rows}
    for model in ["heavy_mlp", "digits"]:
        ratio = by[(model, 64, "grpc")] / by[(model, 64, "http")]
        print(f"\n{model}: gRPC / REST binary at concurrency 64 = {ratio:.2f}")
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main(sys.argv[1])
