"""Backends: tensors in, start and end logits out (PyTorch, ONNX Runtime fp32 and int8)
and how models get there (export, quantization).

Below the reader: they know model directories and tokenizers, nothing of windows, answers or the layers above.
"""
