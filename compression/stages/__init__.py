"""The stages of `oberta compress`, each a function with typed inputs and outputs.

prepare (task data and features) → train (prune with distillation, save ``trained/``) → export (FP32 ONNX, checked)
→ quantize (INT8 per engine) → evaluate (the ONNX files' metrics) → card (model.yaml with the build record).
`compression.compress` runs them in order.
"""
