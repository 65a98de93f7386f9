"""The machine's limit: sustained GEMM rates at a fixed thread count, turned into samples/s for a model.

fp32 is the best of PyTorch (oneDNN/MKL), ONNX Runtime (MLAS) and OpenVINO on square GEMMs of each of GEMM_SIZES;
int8 the best of ONNX Runtime's MatMulInteger (u8 x s8, VNNI/AMX kernels) and torch._int_mm; bf16 PyTorch's (oneDNN,
AMX where present), measured only on CPUs that advertise bf16. A model's limit = rate / its FLOPs per sample: what
it would reach if every instruction were a full-speed matrix product. It is meant as an upper bound, so it is the
best engine at the best size: one size alone read low on an AVX2 host (1024: 84 GFLOP/s, 512: 111), and the model
then ran at 1.23 of its "limit".
"""

from __future__ import annotations

import time
from typing import Callable, Optional

import numpy as np

from tinybert_infer.machine import BF16_FLAGS, cpu_flags

GEMM_SIZES = (512, 1024)


def _rate(fn: Callable[[], object], ops: float, seconds: float) -> float:
    """Sustained giga-ops/s: total work over a window after one warm-up call."""
    fn()
    count, start = 0, time.perf_counter()
    while True:
        fn()
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and count >= 3:
            return ops * count / elapsed / 1e9


def _ort_session(op: str, a_type, w: np.ndarray, threads: int):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    n = w.shape[0]
    out_type = TensorProto.INT32 if op == "MatMulInteger" else TensorProto.FLOAT
    graph = helper.make_graph(
        [helper.make_node(op, ["A", "W"], ["Y"])], "gemm",
        [helper.make_tensor_value_info("A", a_type, [n, n])], [helper.make_tensor_value_info("Y", out_type, [n, n])],
        [numpy_helper.from_array(w, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _openvino_fp32(w: np.ndarray, threads: int):
    import openvino as ov
    from openvino import opset13 as ops

    x = ops.parameter(list(w.shape), np.float32)
    model = ov.Model([ops.matmul(x, ops.constant(w), False, False)], [x])
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                                                      "INFERENCE_PRECISION_HINT": "f32"})
    return compiled.create_infer_request()


def _engine_rates(n: int, threads: int, seconds: float, flags: set) -> dict:
    """giga-ops/s per engine on [n, n] x [n, n]."""
    import torch
    from onnx import TensorProto

    ops = 2.0 * n ** 3
    rng = np.random.default_rng(0)
    engines: dict = {}
    a32 = torch.from_numpy(rng.standard_normal((n, n), dtype=np.float32))
    b32 = torch.from_numpy(rng.standard_normal((n, n), dtype=np.float32))
    with torch.inference_mode():
        engines["fp32_torch"] = _rate(lambda: torch.mm(a32, b32), ops, seconds)
    w32 = rng.standard_normal((n, n), dtype=np.float32)
    s = _ort_session("MatMul", TensorProto.FLOAT, w32, threads)
    x32 = rng.standard_normal((n, n), dtype=np.float32)
    engines["fp32_onnxruntime"] = _rate(lambda: s.run(None, {"A": x32}), ops, seconds)
    try:
        request = _openvino_fp32(w32, threads)
        engines["fp32_openvino"] = _rate(lambda: request.infer({0: x32}), ops, seconds)
    except ImportError:
        pass  # OpenVINO is an optional backend
    s8 = _ort_session("MatMulInteger", TensorProto.UINT8, rng.integers(-127, 128, (n, n)).astype(np.int8), threads)
    xu8 = rng.integers(0, 256, (n, n)).astype(np.uint8)
    engines["int8_onnxruntime"] = _rate(lambda: s8.run(None, {"A": xu8}), ops, seconds)
    try:
        a8 = torch.randint(-127, 128, (n, n), dtype=torch.int8)
        b8 = torch.randint(-127, 128, (n, n), dtype=torch.int8)
        engines["int8_torch"] = _rate(lambda: torch._int_mm(a8, b8), ops, seconds)
    except (RuntimeError, AttributeError):
        pass  # not every torch build has a CPU int8 GEMM
    if flags & BF16_FLAGS:
        a16, b16 = a32.bfloat16(), b32.bfloat16()
        with torch.inference_mode():
            engines["bf16_torch"] = _rate(lambda: torch.mm(a16, b16), ops, seconds)
    return engines


def gemm_rates(threads: int, seconds: float = 1.5, sizes=GEMM_SIZES) -> dict:
    """GFLOP/s (GOP/s for int8) per engine (its best size) and the best per precision. seconds: per engine and
    size."""
    import torch

    torch.set_num_threads(threads)
    flags = cpu_flags()
    engines: dict = {}
    for n in sizes:
        for name, rate in _engine_rates(n, threads, seconds, flags).items():
            engines[name] = max(engines.get(name, 0.0), rate)
    best = {p: max((v for k, v in engines.items() if k.startswith(p + "_")), default=None)
            for p in ("fp32", "int8", "bf16")}
    return {"threads": threads, "gemm_size": "/".join(map(str, sizes)),
            "engines": {k: round(v, 1) for k, v in engines.items()},
            "gflops": {k: (round(v, 1) if v else None) for k, v in best.items()},
            "cpu_flags": sorted(flags & {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16",
                                         "amx_int8", "amx_tile", "avx512_fp16"})}


def limits(rates: dict, flops_per_sample: float) -> dict:
    """samples/s the model would reach at each precision's measured GEMM rate."""
    return {p: (g * 1e9 / flops_per_sample if g else None) for p, g in rates["gflops"].items()}


def fraction_of_limit(samples_per_s: float, precision: str, model_limits: dict) -> Optional[float]:
    limit = model_limits.get(precision) or model_limits.get("fp32")
    return samples_per_s / limit if limit else None


def merge_rooflines(first: dict, second: dict) -> dict:
    """Best rate per engine and precision of two measurements, both kept for the record."""
    engines = {k: max(v, second["engines"].get(k, 0)) for k, v in first["engines"].items()}
    gflops = {p: max((x for x in (first["gflops"].get(p), second["gflops"].get(p)) if x), default=None)
              for p in first["gflops"]}
    return dict(first, engines=engines, gflops=gflops, measurements=[first["gflops"], second["gflops"]])
