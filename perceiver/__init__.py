"""Perceiver and Perceiver IO in JAX/Haiku."""

__version__ = '0.1.0'
