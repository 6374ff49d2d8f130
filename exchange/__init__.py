"""Compute futures exchange: GPU-hour futures graded by MFU and settled on measured goodput."""

__version__ = "0.1.0"
