"""One tensor of every datatype, as numpy arrays, and its protocol datatype: what the echo model
(examples/models/echo) must give back bit for bit, through any client."""
import numpy as np

ARRAYS = {
    "bool": np.array([[True, False]]),
    "uint8": np.array([[0, 255]], dtype=np.uint8),
    "int8": np.array([[-128, 127]], dtype=np.int8),
    "int16": np.array([[-32768, 32767]], dtype=np.int16),
    "int32": np.array([[-(2**31), 2**31 - 1]], dtype=np.int32),
    "int64": np.array([[-(2**63), 2**63 - 1]], dtype=np.int64),
    "fp16": np.array([[0.5, -65504]], dtype=np.float16),
    "fp32": np.array([[np.inf, -0.0]], dtype=np.float32),
    "fp64": np.array([[1e300, -2.5e-300]], dtype=np.float64),
    "bytes": np.array([[b"h\xc3\xa9llo", b""]], dtype=np.object_),
}

DATATYPES = {"bool": "BOOL", "uint8": "UINT8", "int8": "INT8", "int16": "INT16", "int32": "INT32",
             "int64": "INT64", "fp16": "FP16", "fp32": "FP32", "fp64": "FP64", "bytes": "BYTES"}
