"""Stage 4: answer new recordings: the window classifier, its PyTorch and ONNX backends, timelines, batches."""
