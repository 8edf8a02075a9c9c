"""Pure leaves: classification metrics, calibration, the uncertain threshold, recording-level aggregation, plots."""
