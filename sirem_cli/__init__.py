"""sirem: speech-informed reconstruction of real-time spiral MRI of speech.

The package keeps its top level light: importing it never imports torch, finufft or
librosa, so ``sirem --help`` stays fast. The public verbs live in :mod:`sirem_cli.api`.
"""

__version__ = "0.1.0"
