"""Measurements of logged histories and their formatting: shared by the report and the sweep summary."""
