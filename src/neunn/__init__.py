"""NeuNN: recognition of cytoplasmic abnormalities of neutrophils in single-cell blood smear images."""

__version__ = "0.1.0"

# The seven classes of the reference work (Barrera et al., Comput. Biol. Med. 2024), in its order.
NEUTROPHIL_CLASSES = ("NEU", "HYP", "CRY", "DB", "HJBLI", "GBI", "BAC")

# How a trained run scores images: torch (the PyTorch model, any device), onnx (ONNX Runtime on the CPU) or onnx-int8
# (its int8-quantized model, checked against float32: the fastest on a CPU).
BACKENDS = ("torch", "onnx", "onnx-int8")
