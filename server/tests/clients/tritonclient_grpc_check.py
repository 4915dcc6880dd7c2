"""Drives a running kubeinfer-server over gRPC with Triton's own Python client (tritonclient.grpc 2.51,
raw tensor contents as it sends them by default) and checks every answer exactly: health, metadata, the
model configuration and statistics extensions, every datatype through the echo model, and errors with
their gRPC codes and the REST messages. Exits non-zero on the first mismatch."""
import sys
import time

import grpc
import numpy as np
from echo_cases import ARRAYS, DATATYPES
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}")


def main(url):
    # grpc.health.v1, called without generated stubs: an empty HealthCheckRequest asks about the whole
    # server, and HealthCheckResponse{status: SERVING} encodes as field 1 = 1.
    health = grpc.insecure_channel(url).unary_unary(
        "/grpc.health.v1.Health/Check", request_serializer=lambda b: b, response_deserializer=lambda b: b)
    # Readiness reaches the health service within 100 ms of the HTTP probe's.
    answers = []
    for _ in range(20):
        answers.append(health(b""))
        if answers[-1] == b"\x08\x01":
            break
        time.sleep(0.1)
    check(answers[-1] == b"\x08\x01", f"grpc.health.v1 reports SERVING: {answers}")

    client = grpcclient.InferenceServerClient(url)
    check(client.is_server_live(), "server is live")
    check(client.is_server_ready(), "server is ready")
    check(client.is_model_ready("affine"), "affine is ready")
    meta = client.get_server_metadata(as_json=True)
    check(meta["name"] == "kubeinfer" and "binary_tensor_data" in meta["extensions"], f"server metadata {meta}")
    meta = client.get_model_metadata("affine", as_json=True)
    check(meta["versions"] == ["1", "2"] and meta["inputs"][0]["shape"] == ["-1", "4"], f"affine metadata {meta}")
    config = client.get_model_config("digits", as_json=True)["config"]
    check(config["max_batch_size"] == 64 and config["input"][0]["dims"] == ["64"], f"digits config {config}")
    check(config["input"][0]["data_type"] == "TYPE_FP32", "the config's datatype is the enum's name")

    x = np.array([[1, 2, 3, 4], [0.5, -1, 0, 8]], dtype=np.float32)
    inp = grpcclient.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer("affine", [inp], request_id="abc")
    check(result.get_response().id == "abc", "the request id is echoed")
    check(np.array_equal(result.as_numpy("y"), 3 * x - 1), "affine v2 y = 3x - 1")
    check(np.array_equal(result.as_numpy("total"), x.sum(axis=1)), "affine v2 total = sum(x)")
    result = client.infer("affine", [inp], model_version="1", outputs=[grpcclient.InferRequestedOutput("y")])
    check(np.array_equal(result.as_numpy("y"), 2 * x + 1) and result.as_numpy("total") is None,
          "affine v1, only the output asked for")

    arrays, types = ARRAYS, DATATYPES
    inputs = []
    for name, arr in arrays.items():
        i = grpcclient.InferInput(f"in_{name}", list(arr.shape), types[name])
        i.set_data_from_numpy(arr)
        inputs.append(i)
    result = client.infer("echo", inputs)
    for name, arr in arrays.items():
        check(np.array_equal(result.as_numpy(f"out_{name}"), arr), f"{name} round-trips exactly")

    bad = grpcclient.InferInput("x", [1, 3], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
    for call, code, words in [
        (lambda: client.infer("affine", [bad]), "StatusCode.INVALID_ARGUMENT", "needs shape [-1, 4]"),
        (lambda: client.infer("nope", [bad]), "StatusCode.NOT_FOUND", "unknown model 'nope'"),
        (lambda: client.get_model_metadata("affine", model_version="9"), "StatusCode.NOT_FOUND", "has no version '9'"),
    ]:
        try:
            call()
            check(False, f"{words} is refused")
        except InferenceServerException as e:
            check(e.status() == code and words in e.message(), f"{code}: {e.message()}")

    stats = client.get_inference_statistics("affine", as_json=True)
    by_version = {s["version"]: s for s in stats["model_stats"]}
    check(by_version["2"]["inference_stats"]["success"]["count"] == "1", f"statistics count affine v2 {by_version['2']}")
    check(by_version["1"]["inference_count"] == "2", "statistics count affine v1 rows")
    print("all tritonclient.grpc checks passed")


if __name__ == "__main__":
    main(sys.argv[1])
