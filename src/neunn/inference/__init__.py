"""Scoring cells with a trained run: engines (PyTorch, ONNX, int8) behind one interface, export and quantization, the
Predictor with its decision policy and test-time views, file predictions and heatmaps."""
