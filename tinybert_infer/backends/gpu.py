"""ONNX Runtime on an NVIDIA GPU: the CUDA or the TensorRT execution provider, on TinyBERT_sim_bsBS.onnx.

Results go through the same ais_bench-layout driver (inference.run_files), so GPU accuracy is checked by
the same postprocessing. ONNX Runtime silently falls back to the CPU when a GPU provider cannot load its
libraries; that is refused here, so a "GPU" figure is never a CPU one.
"""

from __future__ import annotations

import os
from typing import Optional

from tinybert_infer.errors import ToolError, UsageError
from tinybert_infer.backends.onnxruntime import OnnxRuntimeBackend

# backend name -> execution provider
GPU_PROVIDERS = {"onnxruntime-cuda": "CUDAExecutionProvider", "onnxruntime-tensorrt": "TensorrtExecutionProvider"}
TRT_CACHE_ENV = "TINYBERT_TRT_CACHE"  # folder for TensorRT engines (building one takes a while)


def _provider_list(provider: str, fp16: bool):
    if provider == "TensorrtExecutionProvider":
        options = {"trt_fp16_enable": bool(fp16)}
        cache = os.environ.get(TRT_CACHE_ENV)
        if cache:
            options.update(trt_engine_cache_enable=True, trt_engine_cache_path=cache)
        # CUDA takes the nodes TensorRT does not; no CPU entry, so nothing silently runs on the host.
        return [(provider, options), "CUDAExecutionProvider"]
    return [provider]


class OrtGpuBackend(OnnxRuntimeBackend):
    def __init__(self, model_path, *, backend: str = "onnxruntime-cuda", threads: Optional[int] = None, fp16: bool = False):
        import onnxruntime as ort

        provider = GPU_PROVIDERS[backend]
        if model_path is None:
            raise UsageError("give --model or --batchsize")
        available = ort.get_available_providers()
        if provider not in available:
            raise ToolError(
                f"onnxruntime {ort.__version__} has no {provider} (it has {', '.join(available)}): on an NVIDIA GPU "
                f"host replace it with onnxruntime-gpu built for that CUDA (pip uninstall -y onnxruntime && "
                f"pip install onnxruntime-gpu; see README.md, section 'NVIDIA GPU')")
        super().__init__(model_path, threads=threads, providers=_provider_list(provider, fp16))
        active = self.session.get_providers()
        if not active or active[0] != provider:
            raise ToolError(f"{provider} did not start (CUDA/cuDNN{'/TensorRT' if 'Tensorrt' in provider else ''} "
                            f"libraries missing or no GPU visible); ONNX Runtime would run on {active}")
        self.name = backend
        self.provider = provider
        self.fp16 = fp16

    def describe(self) -> dict:
        info = super().describe()
        info.update(backend=self.name, provider=self.provider, precision="fp16" if self.fp16 else "fp32")
        try:
            import onnxruntime as ort

            info["device"] = ort.get_device()
        except Exception:  # informational only
            pass
        return info
