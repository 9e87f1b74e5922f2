"""Experiment configs (ml-collections), one file per experiment."""
