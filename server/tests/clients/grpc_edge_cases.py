"""gRPC edge cases against a running kubeinfer-server, with the messages built by hand from the service
definitions tritonclient ships (service_pb2):
  malformed URL   a corpus of malformed ModelInferRequests, each answered INVALID_ARGUMENT with the REST
                  message; typed contents answered exactly; the server still live afterwards.
  drain URL PID   eight calls queued (the server waits 2 s for company), then SIGTERM to PID: every call
                  still gets its exact answer while the server drains.
  limits URL      with --max-concurrent-requests 1, a second call while one waits is RESOURCE_EXHAUSTED
                  with REST's 429 message, retry-after metadata and a google.rpc.RetryInfo detail;
                  the first is answered.
Exits non-zero on the first failed check."""
import os
import signal
import struct
import sys
import threading

import grpc
import numpy as np
from google.rpc import error_details_pb2, status_pb2
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}")


def request(datatype="FP32", shape=(1, 4), raw=None, contents=None):
    tensor = service_pb2.ModelInferRequest.InferInputTensor(name="x", datatype=datatype, shape=list(shape))
    if contents is not None:
        tensor.contents.fp32_contents.extend(contents)
    return service_pb2.ModelInferRequest(model_name="affine", model_version="1", inputs=[tensor],
                                         raw_input_contents=raw or [])


def malformed(url):
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(url))
    four = struct.pack("<4f", 1, 2, 3, 4)
    corpus = [
        (request(raw=[four[:12]]), "input 'x': has 12 bytes of binary data but 4 FP32 elements need 16"),
        (request(raw=[four, four]), "raw_input_contents has 2 entries but the request has 1 inputs"),
        (request(datatype="FP128", raw=[four]), "input 'x': unknown datatype \"FP128\""),
        (request(shape=(1, -4), raw=[four]), "input 'x': shape [1, -4] has a negative dimension"),
        (request(shape=(2**62, 2**62), raw=[four]), "input 'x': shape [4611686018427387904, 4611686018427387904] is too large"),
        (request(raw=[four], contents=[1, 2, 3, 4]), "input 'x': has both contents and raw_input_contents; send one"),
        (request(contents=[1, 2, 3]), "input 'x': has 3 elements but its shape needs 4"),
        (request(datatype="BYTES", shape=(1,), raw=[b"\x09\x00\x00\x00abc"]), "input 'x': "),
        (request(shape=(1, 3), contents=[1, 2, 3]), "needs shape [-1, 4]"),
    ]
    for message, words in corpus:
        try:
            stub.ModelInfer(message)
            check(False, f"{words} is refused")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.INVALID_ARGUMENT and words in e.details(),
                  f"INVALID_ARGUMENT: {e.details()}")
    answer = stub.ModelInfer(request(contents=[1, 2, 3, 4]))
    y = np.frombuffer(answer.raw_output_contents[0], dtype=np.float32)
    check(y.tolist() == [3, 5, 7, 9], "typed contents are answered exactly (affine v1, y = 2x + 1)")
    check(stub.ServerLive(service_pb2.ServerLiveRequest()).live, "the server is still live")
    print("all malformed-request checks passed")


def drain(url, pid):
    client = grpcclient.InferenceServerClient(url)
    results, done = {}, threading.Event()
    lock = threading.Lock()

    def callback(i):
        def on_done(result, error):
            with lock:
                results[i] = error if error else result.as_numpy("y")
                if len(results) == 8:
                    done.set()
        return on_done

    for i in range(8):
        x = grpcclient.InferInput("x", [1, 4], "FP32")
        x.set_data_from_numpy(np.full((1, 4), i, dtype=np.float32))
        client.async_infer("affine", [x], callback(i), model_version="1")
    threading.Event().wait(0.3)
    os.kill(pid, signal.SIGTERM)
    check(done.wait(10), "every call was answered")
    for i in range(8):
        got = results[i]
        check(isinstance(got, np.ndarray) and got.tolist() == [[2 * i + 1] * 4], f"call {i} got its answer: {got}")
    print("all drain checks passed")


def limits(url):
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(url))
    first = stub.ModelInfer.future(request(contents=[1, 2, 3, 4]))
    threading.Event().wait(0.3)
    try:
        stub.ModelInfer(request(contents=[1, 2, 3, 4]))
        check(False, "a second call over the limit is refused")
    except grpc.RpcError as e:
        trailers = dict(e.trailing_metadata() or ())
        retry = trailers.get("retry-after")
        check(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "more than 1 requests are in flight" in e.details()
              and retry == "1", f"RESOURCE_EXHAUSTED: {e.details()} (retry-after {retry})")
        # The standard detail, as Google's and gRPC's retrying clients read it.
        details = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
        info = error_details_pb2.RetryInfo()
        check(details.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0] and details.message == e.details()
              and len(details.details) == 1 and details.details[0].Unpack(info)
              and info.retry_delay.seconds == 1, f"google.rpc.RetryInfo of 1 s: {details}")
    y = np.frombuffer(first.result(timeout=10).raw_output_contents[0], dtype=np.float32)
    check(y.tolist() == [3, 5, 7, 9], "the call holding the slot is answered")
    print("all limit checks passed")


if __name__ == "__main__":
    if sys.argv[1] == "malformed":
        malformed(sys.argv[2])
    elif sys.argv[1] == "limits":
        limits(sys.argv[2])
    else:
        drain(sys.argv[2], int(sys.argv[3]))
