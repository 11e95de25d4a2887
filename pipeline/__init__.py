"""Multi-label, long-tailed chest X-ray classification with MONAI and the Robust Asymmetric Loss (RAL)."""

__version__ = "0.1.0"
