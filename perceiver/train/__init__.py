"""Experiment runner library: optimizers, losses, sharding, checkpoints and
the training loop. No flags and no global state: ``experiments/main.py``
turns flags into a config and calls ``train_and_evaluate``."""

from perceiver.train.trainer import TrainState
from perceiver.train.trainer import make_eval_step
from perceiver.train.trainer import make_train_step
from perceiver.train.trainer import train_and_evaluate

__all__ = ['TrainState', 'make_eval_step', 'make_train_step', 'train_and_evaluate']
