"""What an agent does and predicts: evaluation in the environment with intervals (evaluate.py), return-to-go
sweeps, context truncation, predicted vs real (predictions.py) and its compounding error beside other agents.
Imports analysis.core and analysis.interp (a sweep reads attention)."""
