"""Serves-as-published check: every model of tests/corpus/corpus.json, answered by a running
kubeinfer-server through Triton's client (binary tensors and JSON), must equal ONNX Runtime run
in-process on the same inputs. Floats agree within rtol 1e-4 and atol 1e-5 (batching and thread counts
may reorder sums); integers exactly. Prints one line per check and exits non-zero on the first mismatch.

    usage: corpus_check.py HOST:PORT CORPUS_JSON REPOSITORY"""
import json
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
import tritonclient.http as httpclient

RTOL, ATOL = 1e-4, 1e-5
NUMPY = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}")


def make_inputs(model, rng, shapes=None):
    feeds = {}
    for spec in model["inputs"]:
        dtype, shape, recipe = NUMPY[spec["datatype"]], tuple((shapes or {}).get(spec["name"], spec["shape"])), spec["values"]
        if recipe == "zeros":
            feeds[spec["name"]] = np.zeros(shape, dtype)
        elif recipe == "random_normal":
            feeds[spec["name"]] = rng.standard_normal(shape).astype(dtype)
        else:
            _, lo, hi = recipe.split(":")
            if np.issubdtype(dtype, np.integer):
                feeds[spec["name"]] = rng.integers(int(float(lo)), int(float(hi)), shape).astype(dtype)
            else:
                feeds[spec["name"]] = rng.uniform(float(lo), float(hi), shape).astype(dtype)
    return feeds


def same(got, want):
    if got.shape != want.shape or got.dtype != want.dtype:
        return False, f"shape {got.shape} {got.dtype}, expected {want.shape} {want.dtype}"
    if np.issubdtype(want.dtype, np.floating):
        diff = float(np.max(np.abs(got - want))) if want.size else 0.0
        return bool(np.allclose(got, want, rtol=RTOL, atol=ATOL)), f"max |diff| {diff:.3g}"
    return bool(np.array_equal(got, want)), "exact"


def to_input(key, value, binary=True):
    datatype = next(k for k, v in NUMPY.items() if v == value.dtype.type)
    inp = httpclient.InferInput(key, list(value.shape), datatype)
    inp.set_data_from_numpy(value, binary_data=binary)
    return inp


def served(client, name, feeds, binary):
    """Binary: the client's defaults. JSON: JSON inputs, and no outputs named, so all come back as JSON."""
    inputs = [to_input(k, v, binary) for k, v in feeds.items()]
    return client.infer(name, inputs, outputs=None if binary else [])


def compare(client, session, name, feeds, label):
    want = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    for binary in (True, False):
        result = served(client, name, feeds, binary)
        for out, expected in want.items():
            ok, how = same(result.as_numpy(out), expected)
            check(ok, f"{name} {label} {'binary' if binary else 'JSON'}: '{out}' equals ONNX Runtime ({how})")
    return want


def main(url, corpus_path, repo):
    corpus = json.load(open(corpus_path))
    client = httpclient.InferenceServerClient(url, concurrency=8)
    check(client.is_server_ready(), "the server is ready with every corpus model")
    for model in corpus["models"]:
        name = model["name"]
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        session = ort.InferenceSession(f"{repo}/{name}/1/model.onnx", providers=["CPUExecutionProvider"])
        config = client.get_model_config(name)
        batchable = all(len(i.shape) > 0 and not isinstance(i.shape[0], int) for i in session.get_inputs() + session.get_outputs())
        check((config["max_batch_size"] > 0) == batchable, f"{name}: max_batch_size {config['max_batch_size']} says batchable={batchable}")
        compare(client, session, name, make_inputs(model, rng), "as published")

        if batchable:
            # Concurrent one-row requests are stacked into batches; each answer must still be its own.
            one_row = {s["name"]: [1] + s["shape"][1:] for s in model["inputs"]}
            feeds = [make_inputs(model, rng, one_row) for _ in range(8)]
            pending = [client.async_infer(name, [to_input(k, v) for k, v in f.items()]) for f in feeds]
            for i, (f, p) in enumerate(zip(feeds, pending)):
                result = p.get_result()
                for out, expected in zip([o.name for o in session.get_outputs()], session.run(None, f)):
                    ok, how = same(result.as_numpy(out), expected)
                    check(ok, f"{name} concurrent request {i}: '{out}' equals ONNX Runtime ({how})")

    rec = next(m for m in corpus["models"] if m["name"] == "ppocr_rec_v4")
    session = ort.InferenceSession(f"{repo}/ppocr_rec_v4/1/model.onnx", providers=["CPUExecutionProvider"])
    narrow = make_inputs(rec, np.random.default_rng(7), {"x": [1, 3, 48, 160]})
    want = compare(client, session, "ppocr_rec_v4", narrow, "at width 160 ('?' dimensions take any size)")
    check(list(want["softmax_11.tmp_0"].shape) == [1, 20, 6625], "ppocr_rec_v4's output follows the input width")

    # A stateful model: each chunk's state is the previous answer's stateN, on the server as in-process.
    vad = next(m for m in corpus["models"] if m["name"] == "silero_vad")
    session = ort.InferenceSession(f"{repo}/silero_vad/1/model.onnx", providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(11)
    state = np.zeros((2, 1, 128), np.float32)
    for chunk in range(3):
        feeds = make_inputs(vad, rng)
        feeds["state"] = state
        want = dict(zip(["output", "stateN"], session.run(None, feeds)))
        result = served(client, "silero_vad", feeds, True)
        for out in ("output", "stateN"):
            ok, how = same(result.as_numpy(out), want[out])
            check(ok, f"silero_vad chunk {chunk}: '{out}' equals ONNX Runtime with the state carried over ({how})")
        state = want["stateN"]
    print("all corpus checks passed")


if __name__ == "__main__":
    main(*sys.argv[1:])
