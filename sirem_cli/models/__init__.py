"""SIREM networks and frozen audio encoders.

Modules: :mod:`~sirem_cli.models.encoders` (``mel``/``hubert``, registry ``ENCODER_NAMES``;
imports only numpy at module level, so the CLI can list encoders without torch),
:mod:`~sirem_cli.models.decoder` (the audio decoder D) and :mod:`~sirem_cli.models.sirem_net`
(arm weighting, MRI branch, fusion). This package file imports nothing on purpose.
"""
