"""Stage 5: score a model folder (evaluate), cross-validate (cv), write report.html."""
