"""Stand-in for Huawei's `aclruntime` extension (tests only), written from its documented Python API.

The "OM" is an ONNX file (what the stand-in atc writes), run with ONNX Runtime. What the front-end sees is the
extension's surface: session_options, InferenceSession(path, device, options) with get_inputs()/get_outputs()
descriptions (name, datatype, format, shape, size, realsize), run(output_names, feeds) taking BaseTensor
(address, bytes) or Tensor feeds, sumary().exec_time_list, BaseTensor, Tensor, dtype. Feeds are raw bytes
reinterpreted in the model's own dtype and shape, as on the device: a wrong-sized feed is an error, a
right-sized feed of another dtype is silently misread.
"""
import ctypes
import enum
import os
import time

import numpy as np


class dtype(enum.Enum):  # noqa: N801 - the extension's name
    int8 = 1
    uint8 = 4
    int16 = 6
    uint16 = 7
    int32 = 3
    uint32 = 8
    int64 = 9
    uint64 = 10
    float16 = 2
    float32 = 0
    double64 = 11
    bool = 12


_ORT_TYPES = {"tensor(int64)": dtype.int64, "tensor(int32)": dtype.int32, "tensor(float)": dtype.float32,
              "tensor(float16)": dtype.float16, "tensor(int8)": dtype.int8, "tensor(uint8)": dtype.uint8,
              "tensor(bool)": dtype.bool, "tensor(double)": dtype.double64}
_NUMPY = {dtype.int64: np.int64, dtype.int32: np.int32, dtype.float32: np.float32, dtype.float16: np.float16,
          dtype.int8: np.int8, dtype.uint8: np.uint8, dtype.bool: np.bool_, dtype.double64: np.float64}


class session_options:  # noqa: N801
    def __init__(self):
        self.loop = 1
        self.log_level = 2
        self.acl_json_path = ""


class tensor_desc:  # noqa: N801
    def __init__(self, name, datatype, shape):
        self.name = name
        self.datatype = datatype
        self.format = 2  # ND
        self.shape = list(shape)
        self.realsize = int(np.prod(shape)) * np.dtype(_NUMPY[datatype]).itemsize
        self.size = self.realsize


class sumary:  # noqa: N801
    def __init__(self):
        self.exec_time_list = []


class BaseTensor:
    def __init__(self, buf, size):
        self.buf = buf
        self.size = size


class Tensor:
    """Host/device tensor: here always host memory; np.array(tensor) gives its contents."""

    def __init__(self, array):
        self._array = np.ascontiguousarray(array)

    @property
    def shape(self):
        return list(self._array.shape)

    def to_device(self, device_id):
        return None

    def to_host(self):
        return None

    def __array__(self, dtype=None, copy=None):
        return self._array if dtype is None else self._array.astype(dtype)


def _raw(feed):
    if isinstance(feed, BaseTensor):
        return ctypes.string_at(feed.buf, feed.size)
    if isinstance(feed, Tensor):
        return np.asarray(feed).tobytes()
    raise RuntimeError(f"feed type {type(feed).__name__} invalid")


class InferenceSession:
    def __init__(self, model_path, device_id=0, options=None):
        if not os.path.isfile(model_path):
            raise RuntimeError(f"[ERROR] model path:{model_path} not exist (acl load model failed, ret 100003)")
        if not 0 <= int(device_id) <= 255:
            raise RuntimeError(f"device id {device_id} invalid")
        import onnxruntime as ort

        self._options = options or session_options()
        self._session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
        self._inputs = [tensor_desc(i.name, _ORT_TYPES[i.type], i.shape) for i in self._session.get_inputs()]
        self._outputs = [tensor_desc(o.name, _ORT_TYPES[o.type], o.shape) for o in self._session.get_outputs()]
        self._sumary = sumary()

    def get_inputs(self):
        return self._inputs

    def get_outputs(self):
        return self._outputs

    def options(self):
        return self._options

    def set_staticbatch(self):
        return 0

    def reset_sumaryinfo(self):
        self._sumary = sumary()
        return 0

    def sumary(self):
        return self._sumary

    def finalize(self):
        return 0

    def run(self, output_names, feeds):
        if len(feeds) != len(self._inputs):
            raise RuntimeError(f"inputs count {len(feeds)} not match model inputs {len(self._inputs)}")
        arrays = {}
        for desc, feed in zip(self._inputs, feeds):
            raw = _raw(feed)
            if len(raw) != desc.realsize:
                raise RuntimeError(f"input {desc.name} size {len(raw)} not match model size {desc.realsize}")
            arrays[desc.name] = np.frombuffer(raw, dtype=_NUMPY[desc.datatype]).reshape(desc.shape)
        results = None
        for _ in range(max(1, int(self._options.loop))):
            start = time.perf_counter()
            results = self._session.run(list(output_names), arrays)
            self._sumary.exec_time_list.append((time.perf_counter() - start) * 1000.0)
        return [Tensor(r) for r in results]

    def __str__(self):
        rows = [f"  #{i}    {d.name}  ({', '.join(map(str, d.shape))})  {d.datatype.name}  {d.size}  {d.realsize}"
                for i, d in enumerate(self._inputs)]
        return "<Model>\ninput:\n" + "\n".join(rows)
