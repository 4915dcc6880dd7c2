"""Drives a running kubeinfer-server with Triton's own Python client (tritonclient.http 2.51), using the
client's defaults (binary tensors), and checks every answer exactly. Exits non-zero on the first mismatch."""
import json
import sys

import numpy as np
from echo_cases import ARRAYS, DATATYPES
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}")


def main(url, reference_path):
    client = httpclient.InferenceServerClient(url)
    check(client.is_server_live(), "server is live")
    check(client.is_server_ready(), "server is ready")
    check(client.is_model_ready("affine"), "affine is ready")
    check(not client.is_model_ready("nope"), "an unknown model is not ready")
    meta = client.get_model_metadata("affine")
    check(meta["versions"] == ["1", "2"] and meta["inputs"][0]["shape"] == [-1, 4], f"affine metadata {meta}")
    config = client.get_model_config("digits")
    check(config["max_batch_size"] == 64 and config["input"][0]["dims"] == [64], "digits config")

    # Defaults: binary inputs, binary outputs (binary_data_output=true).
    x = np.array([[1, 2, 3, 4], [0.5, -1, 0, 8]], dtype=np.float32)
    inp = httpclient.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer("affine", [inp], request_id="abc")
    check(result.get_response()["id"] == "abc", "the request id is echoed")
    check(np.array_equal(result.as_numpy("y"), 3 * x - 1), "affine v2 y = 3x - 1 (binary)")
    check(np.array_equal(result.as_numpy("total"), x.sum(axis=1)), "affine v2 total = sum(x)")
    result = client.infer("affine", [inp], model_version="1", outputs=[httpclient.InferRequestedOutput("y", binary_data=False)])
    check(np.array_equal(result.as_numpy("y"), 2 * x + 1), "affine v1 y = 2x + 1 (JSON output)")

    # JSON inputs too.
    inp_json = httpclient.InferInput("x", list(x.shape), "FP32")
    inp_json.set_data_from_numpy(x, binary_data=False)
    check(np.array_equal(client.infer("affine", [inp_json]).as_numpy("y"), 3 * x - 1), "JSON inputs")

    reference = json.load(open(reference_path))
    ref_in = reference["inputs"]["float_input"]
    digits_x = np.array(ref_in["data"], dtype=np.float32).reshape(ref_in["shape"])
    inp = httpclient.InferInput("float_input", list(digits_x.shape), "FP32")
    inp.set_data_from_numpy(digits_x)
    result = client.infer("digits", [inp])
    check(result.as_numpy("label").tolist() == reference["outputs"]["label"]["data"], "digits labels match ONNX Runtime")
    probs = np.array(reference["outputs"]["probabilities"]["data"], dtype=np.float32).reshape(-1, 10)
    check(np.allclose(result.as_numpy("probabilities"), probs, atol=1e-6), "digits probabilities match ONNX Runtime")

    # Every datatype, binary, through the echo model.
    arrays, types = ARRAYS, DATATYPES
    inputs = []
    for name, arr in arrays.items():
        i = httpclient.InferInput(f"in_{name}", list(arr.shape), types[name])
        i.set_data_from_numpy(arr)
        inputs.append(i)
    result = client.infer("echo", inputs)
    for name, arr in arrays.items():
        got = result.as_numpy(f"out_{name}")
        check(got.dtype == arr.dtype or name == "bytes", f"{name} keeps its dtype")
        check(np.array_equal(got, arr), f"{name} round-trips exactly")

    # A rank-0 INT64 input and names with '/' and '.'.
    ins = [httpclient.InferInput("x", [1, 3], "FP32"), httpclient.InferInput("k", [], "INT64"),
           httpclient.InferInput("mask", [1, 3], "BOOL")]
    ins[0].set_data_from_numpy(np.array([[1, 2, 3]], dtype=np.float32))
    ins[1].set_data_from_numpy(np.array(5, dtype=np.int64))
    ins[2].set_data_from_numpy(np.array([[True, True, False]]))
    result = client.infer("multi_io", ins)
    check(result.as_numpy("out/scaled.x").tolist() == [[5, 10, 15]], "multi_io out/scaled.x")
    check(result.as_numpy("out/mask.count").tolist() == [2], "multi_io out/mask.count")

    # Caller mistakes surface as the client's exception with the server's status and message.
    bad = httpclient.InferInput("x", [1, 3], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
    try:
        client.infer("affine", [bad])
        check(False, "a wrong shape is rejected")
    except InferenceServerException as e:
        check(e.status() == "400" and "needs shape [-1, 4]" in e.message(), f"a wrong shape is a 400: {e}")

    stats = client.get_inference_statistics("affine")
    by_version = {s["version"]: s for s in stats["model_stats"]}
    check(by_version["2"]["inference_stats"]["success"]["count"] == 2, "statistics count affine v2 requests")
    check(by_version["1"]["inference_count"] == 2, "statistics count affine v1 rows")
    print("all tritonclient checks passed")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
