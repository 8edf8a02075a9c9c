"""Stage 3: clip dataset, training loop and head fits, run context, model folder (artifact), prepare/fit pipeline."""
