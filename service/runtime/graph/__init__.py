"""Rewrites of exported ONNX graphs, shared by export (compression) and the engines (serving)."""
