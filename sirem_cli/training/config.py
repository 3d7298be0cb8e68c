"""The training configuration: optimizer, schedule, loss weights, and the model it trains.

:class:`TrainConfig` holds the :class:`~sirem_cli.models.sirem_net.ModelConfig` it trains
(never a copy of its fields); both are stored as JSON in every checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from sirem_cli.config import JsonConfig
from sirem_cli.errors import InputError
from sirem_cli.models.sirem_net import ModelConfig
from sirem_cli.training.losses import FFT_NORMS


@dataclasses.dataclass(frozen=True)
class TrainConfig(JsonConfig):
    """Every training hyperparameter (defaults: the paper / ``method.md``).

    Attributes:
        model: the network's configuration (:class:`ModelConfig`; its ``embedding_dim``,
            ``n_arms`` and ``arms_per_frame`` are set from the data by ``sirem train``).
        lr: AdamW learning rate.
        decoder_prior: start the decoder at the mean training target (output bias = its
            logit, output weights x 0.01) rather than at sigmoid noise (not in the paper).
        arm_lr: learning rate of the arm logits (default 0.05; None: ``lr``, the paper's
            literal setting). The paper trains for ~10^5 steps; with its 1e-4 the arm profile
            barely moves in the 20 epochs of a corpus of this size, while 0.05 lets it settle
            at the budget K (sum p near 2) within the run.
        weight_decay: AdamW weight decay.
        batch_size: frames per step (per process under DDP).
        epochs: epochs; the cosine schedule spans all of them.
        grad_clip: max gradient norm (<= 0 disables clipping).
        val_every: validate every this many epochs (and after the last).
        budget_k: K of the budget loss.
        psf_weight: alpha.
        budget_weight: beta.
        mask_weight: gamma.
        psf_exclude_dc: drop the DC term from L_psf.
        fft_norm: normalization of the FFTs in L_psf and L_mask.
        seed: seed of the weights, the frame order and dropout.
        device: "auto", "cpu", "cuda" or "cuda:N".
        val_batch_size: frames per validation batch.
        target: what the frames were trained against: "reference" or "truth" (recorded).
        train_subjects: the speakers of the training frames (recorded, so that reconstruct and
            evaluate can warn when a test speaker was among them).
    """

    _unknown_what = "training option(s)"

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    lr: float = 1e-4
    arm_lr: float | None = 0.05
    decoder_prior: bool = True
    weight_decay: float = 1e-5
    batch_size: int = 8
    epochs: int = 20
    grad_clip: float = 1.0
    val_every: int = 5
    budget_k: float = 2.0
    psf_weight: float = 0.1
    budget_weight: float = 0.01
    mask_weight: float = 0.01
    psf_exclude_dc: bool = False
    fft_norm: str = "backward"
    seed: int = 0
    device: str = "auto"
    val_batch_size: int = 32
    target: str = "reference"
    train_subjects: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.model, ModelConfig):
            raise InputError(f"model: expected a ModelConfig, got {type(self.model).__name__}")
        object.__setattr__(self, "train_subjects", tuple(self.train_subjects))
        for flag, value in (
            ("--epochs", self.epochs),
            ("--batch-size", self.batch_size),
            ("--val-every", self.val_every),
            ("val_batch_size", self.val_batch_size),
        ):
            if value < 1:
                raise InputError(f"{flag} must be >= 1, got {value}")
        for flag, value, low in (
            ("--lr", self.lr, 0.0),
            ("--arm-lr", self.arm_lr, 0.0),
            ("--budget", self.budget_k, 0.0),
        ):
            if value is not None and not (math.isfinite(value) and value > low):
                raise InputError(f"{flag} must be a number > {low:g}, got {value:g}")
        if self.budget_k > self.model.n_arms:
            raise InputError(
                f"--budget must be at most {self.model.n_arms} arms, got {self.budget_k:g}"
            )
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise InputError(f"--weight-decay must be >= 0, got {self.weight_decay:g}")
        if self.seed < 0:
            raise InputError(f"--seed must be >= 0, got {self.seed}")
        if self.fft_norm not in FFT_NORMS:
            raise InputError(f"fft_norm must be one of {', '.join(FFT_NORMS)}")

    def model_config(self, embedding_dim: int) -> ModelConfig:
        """The :class:`ModelConfig` for embeddings of size ``embedding_dim``."""
        return dataclasses.replace(self.model, embedding_dim=embedding_dim)

    @classmethod
    def build(cls, **options: Any) -> TrainConfig:
        """A configuration from flat options, each routed to the model or the training."""
        return cls().replace(**options)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes``; names of :class:`ModelConfig` fields change the model."""
        model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
        model = {k: v for k, v in changes.items() if k in model_fields}
        own = {k: v for k, v in changes.items() if k not in model_fields}
        if model:
            own["model"] = dataclasses.replace(self.model, **model)
        return dataclasses.replace(self, **own)
