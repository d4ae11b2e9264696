"""Engines that run the local per-batch scoring code past one machine (fer_core.engines.ray)."""
