"""torch -> ONNX -> onnxsim, and the CPU artefacts (bf16, int8) built from the simplified graph."""
