"""Clients of the served model: batch prediction to CSV and the TF Serving REST body mapping."""
