"""Drives a running kubeinfer-server with KServe's own Python client (PyPI `kserve`, protocol v2), as a
new user would, over REST and gRPC, and checks every answer exactly.
  clients HTTP_URL GRPC_ADDR      health and readiness (the REST bodies it parses), inference in JSON and
                                  binary, every datatype through the echo model, errors with our messages.
  keys HTTP_URL GRPC_ADDR KEY     with --api-keys-file: refused without a key, answered with KEY sent as
                                  the client's headers and gRPC metadata.
Exits non-zero on the first failed check."""
import asyncio
import sys

import grpc
import httpx
import numpy as np
from echo_cases import ARRAYS, DATATYPES
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, RESTConfig
from kserve.protocol.infer_type import InferRequest, RequestedOutput


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}")


def affine_request(binary):
    x = InferInput("x", [2, 4], "FP32")
    x.set_data_from_numpy(np.array([[1, 2, 3, 4], [0.5, -1, 0, 8]], dtype=np.float32), binary_data=binary)
    return InferRequest(model_name="affine", infer_inputs=[x], request_id="kserve-1")


AFFINE_V2_Y = [[2, 5, 8, 11], [0.5, -4, -1, 23]]  # y = 3x - 1


def echo_request(binary):
    """Every datatype, in binary where `binary(name)` says so and in JSON elsewhere, both ways."""
    inputs = []
    for name, array in ARRAYS.items():
        i = InferInput(f"in_{name}", list(array.shape), DATATYPES[name])
        i.set_data_from_numpy(array, binary_data=binary(name))
        inputs.append(i)
    outputs = [RequestedOutput(f"out_{n}", parameters={"binary_data": binary(n)}) for n in ARRAYS]
    return InferRequest(model_name="echo", infer_inputs=inputs, request_outputs=outputs)


def same(got, want):
    """Equal values; BYTES come back from JSON as str, which is the client's choice of type."""
    if want.dtype == np.object_:
        got = np.array([[v.encode() if isinstance(v, str) else v for v in row] for row in got], dtype=np.object_)
    return got.shape == want.shape and np.array_equal(got, want)


def echoed(response):
    return {o.name[4:]: o.as_numpy() for o in response.outputs}


async def rest(url):
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
    check(await client.is_server_live(url), "REST: the server is live (a JSON body KServe can parse)")
    check(await client.is_server_ready(url), "REST: the server is ready")
    check(await client.is_model_ready(url, "affine"), "REST: affine is ready")
    for binary in (False, True):
        answer = await client.infer(url, affine_request(binary), model_name="affine")
        y = next(o for o in answer.outputs if o.name == "y").as_numpy()
        check(answer.id == "kserve-1" and y.tolist() == AFFINE_V2_Y, f"REST affine, binary={binary}: {y.tolist()}")
    got = echoed(await client.infer(url, echo_request(lambda _: True), model_name="echo"))
    for name in ARRAYS:
        check(same(got[name], ARRAYS[name]), f"REST binary: {name} round-trips exactly")
    # JSON carries neither FP16 (the client refuses it) nor FP32's infinity: those two stay binary.
    in_json = [n for n in ARRAYS if n not in ("fp16", "fp32")]
    got = echoed(await client.infer(url, echo_request(lambda n: n not in in_json), model_name="echo"))
    for name in in_json:
        check(same(got[name], ARRAYS[name]), f"REST JSON: {name} round-trips exactly")
    for model, status, words in [("nope", 404, "unknown model 'nope'")]:
        try:
            await client.infer(url, InferRequest(model_name=model, infer_inputs=[]), model_name=model)
            check(False, f"{words} is refused")
        except httpx.HTTPStatusError as e:
            check(e.response.status_code == status and words in str(e), f"REST {status}: {e}")
    bad = InferInput("x", [1, 3], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32), binary_data=False)
    try:
        await client.infer(url, InferRequest(model_name="affine", infer_inputs=[bad]), model_name="affine")
        check(False, "a wrong shape is refused")
    except httpx.HTTPStatusError as e:
        check(e.response.status_code == 400 and "needs shape [-1, 4]" in str(e), f"REST 400: {e}")
    await client.close()


async def grpc_checks(addr):
    client = InferenceGRPCClient(addr, retries=0)
    check(await client.is_server_live(), "gRPC: the server is live")
    check(await client.is_server_ready(), "gRPC: the server is ready")
    check(await client.is_model_ready("affine"), "gRPC: affine is ready")
    for binary in (False, True):
        answer = await client.infer(affine_request(binary))
        y = next(o for o in answer.outputs if o.name == "y").as_numpy()
        check(answer.id == "kserve-1" and y.tolist() == AFFINE_V2_Y,
              f"gRPC affine, {'raw' if binary else 'typed'} contents: {y.tolist()}")
    # Every datatype as raw contents: the echo model takes all ten at once, and typed contents have no
    # FP16 field (nor may a request mix the two).
    got = echoed(await client.infer(echo_request(lambda _: True)))
    for name in ARRAYS:
        check(same(got[name], ARRAYS[name]), f"gRPC raw contents: {name} round-trips exactly")
    bad = InferInput("x", [1, 3], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
    for request, code, words in [
        (InferRequest(model_name="nope", infer_inputs=[bad]), grpc.StatusCode.NOT_FOUND, "unknown model 'nope'"),
        (InferRequest(model_name="affine", infer_inputs=[bad]), grpc.StatusCode.INVALID_ARGUMENT,
         "needs shape [-1, 4]"),
    ]:
        try:
            await client.infer(request)
            check(False, f"{words} is refused")
        except grpc.RpcError as e:
            check(e.code() == code and words in e.details(), f"gRPC {code.name}: {e.details()}")
    await client.close()


async def keys(url, addr, key):
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
    try:
        await client.infer(url, affine_request(True), model_name="affine")
        check(False, "REST without a key is refused")
    except httpx.HTTPStatusError as e:
        check(e.response.status_code == 401, f"REST without a key: {e.response.status_code}")
    headers = {"Authorization": f"Bearer {key}"}
    answer = await client.infer(url, affine_request(True), model_name="affine", headers=headers)
    check(answer.outputs[0].as_numpy().tolist() == AFFINE_V2_Y, "REST with the key in the client's headers")
    await client.close()
    client = InferenceGRPCClient(addr, retries=0)
    try:
        await client.infer(affine_request(False))
        check(False, "gRPC without a key is refused")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.UNAUTHENTICATED, f"gRPC without a key: {e.code().name}")
    answer = await client.infer(affine_request(False), headers=[("authorization", f"Bearer {key}")])
    check(answer.outputs[0].as_numpy().tolist() == AFFINE_V2_Y, "gRPC with the key in the metadata")
    await client.close()


def main(mode, url, addr, *rest_args):
    if mode == "clients":
        asyncio.run(rest(url))
        asyncio.run(grpc_checks(addr))
    else:
        asyncio.run(keys(url, addr, *rest_args))
    print("all kserve checks passed")


if __name__ == "__main__":
    main(*sys.argv[1:])
