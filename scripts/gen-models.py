#!/usr/bin/env python3
"""Regenerates the example model repository in examples/models/ (Triton layout <model>/<version>/model.onnx)
and the reference outputs the tests compare against (server/tests/fixtures/).

Run through `make models`, which installs the pinned tooling from scripts/requirements-models.txt.
Every model is deterministic: fixed seeds, fixed training data.
"""
import json
import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODELS = ROOT / "examples" / "models"
FIXTURES = ROOT / "server" / "tests" / "fixtures"
# ONNX Runtime 1.31 runs every opset up to 23; 17 keeps the files loadable by older runtimes too.
OPSET = 17
IR_VERSION = 8


def save(model: onnx.ModelProto, name: str, version: int = 1, external_data: str = "") -> pathlib.Path:
    """Writes the model; with `external_data`, its weights go to that file beside model.onnx."""
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    path = MODELS / name / str(version) / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    if external_data:
        # onnx appends to an existing external data file; a regenerated model must not grow.
        (path.parent / external_data).unlink(missing_ok=True)
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=external_data, size_threshold=0)
    else:
        onnx.save(model, str(path))
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size} bytes)")
    return path


def graph_model(nodes, name, inputs, outputs, initializers=()):
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="kubeinfer")


def digits() -> None:
    """A trained classifier: scikit-learn's MLP on the 8x8 digits, converted with skl2onnx."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    clf = MLPClassifier(hidden_layer_sizes=(64,), random_state=0, max_iter=600).fit(x, data.target)
    model = to_onnx(
        clf,
        initial_types=[("float_input", FloatTensorType([None, 64]))],
        options={id(clf): {"zipmap": False}},
        target_opset={"": OPSET, "ai.onnx.ml": 3},
    )
    path = save(model, "digits")
    reference(path, "digits", {"float_input": x[:8]})


def heavy_mlp() -> None:
    """The benchmark model: float32 [N,512] -> 2048 -> 2048 -> 10 with ReLU, fixed-seed weights."""
    rng = np.random.default_rng(42)
    sizes = [512, 2048, 2048, 10]
    nodes, inits, prev = [], [], "input"
    for i, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
        w = (rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32)
        b = (rng.standard_normal(fan_out) * 0.01).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        last = i == len(sizes) - 2
        out = "logits" if last else f"h{i}"
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [out if last else f"z{i}"]))
        if not last:
            nodes.append(helper.make_node("Relu", [f"z{i}"], [out]))
        prev = out
    model = graph_model(
        nodes,
        "heavy_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 512])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    save(model, "heavy_mlp")


def affine() -> None:
    """Known analytic output for exact tests: y = a*x + b and total = sum(x) per row; two versions."""
    for version, (a, b) in {1: (2.0, 1.0), 2: (3.0, -1.0)}.items():
        inits = [
            numpy_helper.from_array(np.array(a, dtype=np.float32), "a"),
            numpy_helper.from_array(np.array(b, dtype=np.float32), "b"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"),
        ]
        nodes = [
            helper.make_node("Mul", ["x", "a"], ["ax"]),
            helper.make_node("Add", ["ax", "b"], ["y"]),
            helper.make_node("ReduceSum", ["x", "axes"], ["total"], keepdims=0),
        ]
        model = graph_model(
            nodes,
            "affine",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
            [
                helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4]),
                helper.make_tensor_value_info("total", TensorProto.FLOAT, ["batch"]),
            ],
            inits,
        )
        save(model, "affine", version)


def multi_io() -> None:
    """Several inputs and outputs of different datatypes, a rank-0 INT64 input, names with '/' and '.'.

    The scalar input has no batch dimension, so the server must serve this model request by request.
    """
    inits = [numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")]
    nodes = [
        helper.make_node("Cast", ["k"], ["k_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["x", "k_f"], ["out/scaled.x"]),
        helper.make_node("Cast", ["mask"], ["mask_i"], to=TensorProto.INT64),
        helper.make_node("ReduceSum", ["mask_i", "axes"], ["out/mask.count"], keepdims=0),
        helper.make_node("Cast", ["x"], ["x_d"], to=TensorProto.DOUBLE),
        helper.make_node("ReduceSum", ["x_d", "axes"], ["sum.f64"], keepdims=0),
    ]
    model = graph_model(
        nodes,
        "multi_io",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("k", TensorProto.INT64, []),
            helper.make_tensor_value_info("mask", TensorProto.BOOL, ["batch", 3]),
        ],
        [
            helper.make_tensor_value_info("out/scaled.x", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("out/mask.count", TensorProto.INT64, ["batch"]),
            helper.make_tensor_value_info("sum.f64", TensorProto.DOUBLE, ["batch"]),
        ],
        inits,
    )
    save(model, "multi_io")


ECHO_TYPES = {
    "bool": TensorProto.BOOL,
    "uint8": TensorProto.UINT8,
    "int8": TensorProto.INT8,
    "int16": TensorProto.INT16,
    "int32": TensorProto.INT32,
    "int64": TensorProto.INT64,
    "fp16": TensorProto.FLOAT16,
    "fp32": TensorProto.FLOAT,
    "fp64": TensorProto.DOUBLE,
    "bytes": TensorProto.STRING,
}


def echo() -> None:
    """One [batch, 2] input per datatype, each returned unchanged: exercises every codec end to end."""
    nodes = [helper.make_node("Identity", [f"in_{t}"], [f"out_{t}"]) for t in ECHO_TYPES]
    model = graph_model(
        nodes,
        "echo",
        [helper.make_tensor_value_info(f"in_{t}", ty, ["batch", 2]) for t, ty in ECHO_TYPES.items()],
        [helper.make_tensor_value_info(f"out_{t}", ty, ["batch", 2]) for t, ty in ECHO_TYPES.items()],
    )
    save(model, "echo")


def fixed_batch() -> None:
    """A fixed batch dimension of 1: not batchable, served request by request. y = 3x."""
    inits = [numpy_helper.from_array(np.array(3.0, dtype=np.float32), "three")]
    model = graph_model(
        [helper.make_node("Mul", ["x", "three"], ["y"])],
        "fixed_batch",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        inits,
    )
    save(model, "fixed_batch")


def external_data() -> None:
    """Weights outside the graph, in weights.bin beside model.onnx, as large exported models keep them:
    y = x @ W + b with W = 3 * identity and b = [1, 2, 3, 4], so y = 3x + b exactly."""
    inits = [
        numpy_helper.from_array((3.0 * np.eye(4)).astype(np.float32), "W"),
        numpy_helper.from_array(np.array([1, 2, 3, 4], dtype=np.float32), "b"),
    ]
    nodes = [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])]
    model = graph_model(
        nodes,
        "external_data",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        inits,
    )
    save(model, "external_data", external_data="weights.bin")


def reference(path: pathlib.Path, name: str, feeds: dict) -> None:
    """ONNX Runtime's own outputs for `feeds`, so the server's answers can be compared with them."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    outputs = session.run(names, feeds)
    doc = {
        "onnxruntime": onnxruntime.__version__,
        "inputs": {k: {"shape": list(v.shape), "data": v.ravel().tolist()} for k, v in feeds.items()},
        "outputs": {n: {"shape": list(v.shape), "data": v.ravel().tolist()} for n, v in zip(names, outputs)},
    }
    FIXTURES.mkdir(parents=True, exist_ok=True)
    out = FIXTURES / f"{name}_reference.json"
    out.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    digits()
    heavy_mlp()
    affine()
    multi_io()
    echo()
    fixed_batch()
    external_data()
