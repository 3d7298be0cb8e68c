"""SIREM training: losses, checkpoints, the training loop and DDP helpers.

Modules: :mod:`~sirem_cli.training.losses`, :mod:`~sirem_cli.training.checkpoint`,
:mod:`~sirem_cli.training.loop` (``train``, ``TrainConfig``, ``FrameData``) and
:mod:`~sirem_cli.training.distributed` (torchrun entry point). This package file imports nothing,
so importing a submodule stays as light as that submodule.
"""
