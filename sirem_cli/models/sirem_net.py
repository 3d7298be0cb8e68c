"""The SIREM network: audio branch, learned arm weighting, MRI branch and fusion.

Paper eqs. 1-3 and 9-16. Shapes: B batch, A interleaves (13 in USC: one learned weight each),
N arms per frame (A for the paper's 13-arm frames; with fewer, frame t holds the interleaves
``arms[t]``), S samples per arm, C coils, H x W image, E embedding size.

* Audio branch (eq. 11): x_a = D(h), h the cached time-pooled embedding, D the MLP decoder
  (:class:`~sirem_cli.models.decoder.AudioDecoder`), output in [0, 1].
* Arm weighting (eq. 16): p = sigmoid(l), l in R^A trainable, initialized to 0 (p = 0.5). With
  ``arm_select="topk"`` the forward pass uses a hard 0/1 mask of the K largest p and the backward
  pass the gradient of the soft p (straight-through estimator).
* MRI branch (eq. 13): x_m = |A^H(p[arms] * dcf * k)| / (max + eps) with A^H the SENSE adjoint
  sum_c conj(S_c) NUFFT^H of the frame's arms, normalized to [0, 1] per frame by dividing by the
  frame's maximum (plus ``eps`` = 1e-8, so an all-zero frame stays 0). The map is linear in
  k-space up to the magnitude, so with the per-arm coil-combined images
  B_j = sum_c conj(S_c) NUFFT_j^H(dcf_j * k_{c,j}) it equals |sum_j p[arms_j] B_j| / (max + eps).
  Training uses this form (B_j is precomputed once per frame by the same SENSE operator,
  :meth:`~sirem_cli.mri.sense.FrameSenseOp.arm_adjoint`; an epoch costs no NUFFT and the
  gradient to l is exact); :func:`mri_branch_from_kspace` computes the same thing through the
  differentiable SENSE adjoint.
* Fusion (eq. 3): x_hat = w x_a + (1 - w) x_m, with w ``static`` (the mean of the training frames'
  explained-by-audio maps, a buffer saved in the checkpoint), ``frame`` (the per-frame annotated
  map, an oracle) or ``learned`` (predicted by :class:`FusionHead` from the audio embedding and
  both branch images, as a correction of the static map's logit). With x_a, x_m, w in [0, 1] the
  result lies in [0, 1] (paper proposition 1).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from sirem_cli.config import JsonConfig
from sirem_cli.errors import InputError, ShapeError
from sirem_cli.models.decoder import DEFAULT_DROPOUT, DEFAULT_HIDDEN, AudioDecoder
from sirem_cli.models.registry import (
    ARM_SELECTIONS,
    DEFAULT_ENCODER,
    FUSION_MAPS,
    FUSIONS,
    check_choice,
    encoder_spec,
)

MRI_EPS = 1e-8
_PRIOR_CLAMP = 1e-3

#: SENSE adjoint of a batch of frames: (B, C, N, S) complex64 -> (B, H, W) complex64.
SenseAdjointFn = Callable[[Tensor], Tensor]


@dataclasses.dataclass(frozen=True)
class ModelConfig(JsonConfig):
    """Everything needed to rebuild a :class:`SiremNet`; stored as JSON in checkpoints.

    Attributes:
        embedding_dim: E, size of the cached audio embedding (0 until the data sets it).
        image_size: (H, W) in pixels.
        n_arms: A, interleaves of the trajectory table (13 in USC): one learned weight each.
        arms_per_frame: N, arms per frame of the data the model was trained on (None: A, the
            paper's frames of every interleaf); a reconstruction must use the same N.
        decoder_hidden: hidden widths of the decoder (paper: 1024, 2048).
        dropout: decoder dropout probability (the paper gives none; 0.1).
        arm_select: "soft" (paper) or "topk" (hard top-K, straight-through gradient).
        arm_topk: K for ``arm_select="topk"``.
        eba_mode: fusion map "static" (default), "frame" (oracle) or "learned".
        fusion: "convex" (the paper: w from ``eba_mode``) or "residual"
            (x_m + w (x_a - x_m) with a learned per-pixel w starting at 0).
        no_audio: the "w/o audio" ablation: embeddings are replaced by zeros everywhere.
        encoder: name of the audio encoder whose embeddings the model consumes.
        mri_eps: the eps of the per-frame max normalization of the MRI branch.
        head_channels: width of the learned fusion head's convolutions.
        head_audio_channels: audio-embedding channels broadcast into the learned head.
    """

    _unknown_what = "model config keys"

    embedding_dim: int = 0
    image_size: tuple[int, int] = (84, 84)
    n_arms: int = 13
    arms_per_frame: int | None = None
    decoder_hidden: tuple[int, ...] = DEFAULT_HIDDEN
    dropout: float = DEFAULT_DROPOUT
    arm_select: str = "soft"
    arm_topk: int = 2
    eba_mode: str = "static"
    fusion: str = "convex"
    no_audio: bool = False
    encoder: str = DEFAULT_ENCODER
    mri_eps: float = MRI_EPS
    head_channels: int = 16
    head_audio_channels: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", tuple(int(v) for v in self.image_size))
        object.__setattr__(self, "decoder_hidden", tuple(int(v) for v in self.decoder_hidden))
        check_choice("arm_select", self.arm_select, ARM_SELECTIONS)
        check_choice("eba_mode", self.eba_mode, FUSION_MAPS)
        check_choice("fusion", self.fusion, FUSIONS)
        encoder_spec(self.encoder)
        if not 1 <= self.arm_topk <= self.n_arms:
            raise InputError(f"arm_topk must be in 1..{self.n_arms}, got {self.arm_topk}")
        if len(self.image_size) != 2 or min(self.image_size) < 1:
            raise InputError(f"image_size must be (H, W) with H, W >= 1, got {self.image_size}")
        if self.embedding_dim < 0 or self.n_arms < 1:
            raise InputError("embedding_dim must be >= 0 (0: set from the data), n_arms >= 1")
        if self.arms_per_frame is not None and not 1 <= self.arms_per_frame <= self.n_arms:
            raise InputError(
                f"arms_per_frame must be in 1..{self.n_arms} (the interleaves), got "
                f"{self.arms_per_frame}"
            )


class SiremOutput(NamedTuple):
    """What :class:`SiremNet` returns; every image is float32 in [0, 1].

    Attributes:
        recon: (B, H, W) fused reconstruction x_hat.
        x_audio: (B, H, W) audio-branch image x_a.
        x_mri: (B, H, W) MRI-branch image x_m.
        w: (B, H, W) fusion map used.
        p: (A,) soft arm weights sigmoid(l) (what the regularizers see).
        p_used: (A,) arm weights applied to the k-space (= p, or the hard top-K mask).
    """

    recon: Tensor
    x_audio: Tensor
    x_mri: Tensor
    w: Tensor
    p: Tensor
    p_used: Tensor


def topk_straight_through(p: Tensor, k: int) -> Tensor:
    """Hard top-K mask in the forward pass, the soft weights' gradient in the backward pass.

    Args:
        p: (A,) float32 soft weights in (0, 1).
        k: number of arms kept.

    Returns:
        (A,) float32 tensor equal to 1 at the K largest entries of p and 0 elsewhere, whose
        gradient with respect to p is the identity.
    """
    index = torch.topk(p.detach(), k).indices
    hard = torch.zeros_like(p).scatter(0, index, 1.0)
    return hard + (p - p.detach())


def normalize_per_frame(magnitude: Tensor, eps: float = MRI_EPS) -> Tensor:
    """Divide each frame by its maximum (+ eps) so it lies in [0, 1).

    Args:
        magnitude: (B, H, W) non-negative float32 images.
        eps: added to the per-frame maximum.

    Returns:
        (B, H, W) float32, differentiable (the gradient flows through the maximum too).
    """
    peak = magnitude.amax(dim=(-2, -1), keepdim=True)  # (B, 1, 1)
    return magnitude / (peak + eps)


def _check_p(p: Tensor, n_batch: int, n_arms: int) -> None:
    if p.is_complex() or p.shape not in ((n_arms,), (n_batch, n_arms)):
        raise ShapeError(
            f"arm weights p: expected real (N,) = ({n_arms},) or (B, N) = ({n_batch}, {n_arms}), "
            f"got {tuple(p.shape)}"
        )


def frame_arm_weights(p: Tensor, arms: Tensor | None, n_batch: int) -> Tensor:
    """The weights of each frame's own arms: ``p[arms]`` (B, N), or p (A,) broadcast to (B, A)
    when every frame holds all arms in interleaf order (``arms`` None)."""
    if arms is None:
        return p.expand(n_batch, -1)
    return p[arms.to(device=p.device, dtype=torch.long)]  # (B, N)


def mri_branch_from_arm_images(p: Tensor, arm_images: Tensor, eps: float = MRI_EPS) -> Tensor:
    """MRI branch from per-arm coil-combined images: |sum_j p_j B_j| / (max + eps).

    Args:
        p: (N,) or (B, N) float32 weights of the frames' arms (:func:`frame_arm_weights`).
        arm_images: (B, N, H, W) complex64, B_j = sum_c conj(S_c) NUFFT_j^H(dcf_j * k_{c,j})
            (:meth:`~sirem_cli.mri.sense.FrameSenseOp.arm_adjoint` of the weighted k-space).
        eps: see :func:`normalize_per_frame`.

    Returns:
        (B, H, W) float32 x_m in [0, 1], differentiable with respect to p.
    """
    if arm_images.ndim != 4 or not arm_images.is_complex():
        raise ShapeError(
            f"arm_images: expected complex (B, N, H, W), got {arm_images.dtype} "
            f"{tuple(arm_images.shape)}"
        )
    _check_p(p, arm_images.shape[0], arm_images.shape[1])
    weights = p.to(arm_images.dtype).expand(arm_images.shape[0], -1)  # (B, N)
    combined = torch.einsum("bn,bnhw->bhw", weights, arm_images)  # (B, H, W)
    return normalize_per_frame(combined.abs(), eps)


def mri_branch_from_kspace(
    p: Tensor,
    kspace: Tensor,
    dcf: Tensor,
    sense_adjoint: SenseAdjointFn,
    eps: float = MRI_EPS,
) -> Tensor:
    """MRI branch from k-space (paper eq. 13): |A^H (p (.) dcf (.) k)|, normalized per frame.

    A^H is the SENSE adjoint ``sum_c conj(S_c) NUFFT^H`` of the frames' own arms, so this is
    the same linear map as :func:`mri_branch_from_arm_images` applied without the per-arm split.

    Args:
        p: (B, N) float32 weights of each frame's arms (:func:`frame_arm_weights`).
        kspace: (B, C, N, S) complex64 frames.
        dcf: (B, N, S) float32 density compensation of each frame's arms.
        sense_adjoint: differentiable SENSE adjoint (B, C, N, S) -> (B, H, W), e.g.
            :meth:`~sirem_cli.mri.sense.FrameSenseOp.adjoint` of these frames.
        eps: see :func:`normalize_per_frame`.

    Returns:
        (B, H, W) x_m in [0, 1] (the real dtype of what ``sense_adjoint`` returns),
        differentiable with respect to p.
    """
    if kspace.ndim != 4 or not kspace.is_complex():
        raise ShapeError(f"kspace: expected complex (B, C, N, S), got {tuple(kspace.shape)}")
    n_batch, _, n_arms, n_samples = kspace.shape
    _check_p(p, n_batch, n_arms)
    if tuple(dcf.shape) != (n_batch, n_arms, n_samples):
        raise ShapeError(
            f"dcf: expected (B, N, S) = {(n_batch, n_arms, n_samples)}, got {tuple(dcf.shape)}"
        )
    weights = p.expand(n_batch, -1)[..., None] * dcf  # (B, N, S)
    combined = sense_adjoint(kspace * weights[:, None].to(kspace.dtype))  # (B, H, W)
    return normalize_per_frame(combined.abs(), eps)


def fuse(x_audio: Tensor, x_mri: Tensor, w: Tensor) -> Tensor:
    """Pixelwise fusion x_hat = w x_a + (1 - w) x_m (paper eq. 3).

    Args:
        x_audio: (B, H, W) float32 audio-branch image.
        x_mri: (B, H, W) float32 MRI-branch image.
        w: (H, W) or (B, H, W) float32 explained-by-audio map.

    Returns:
        (B, H, W) float32; in [0, 1] whenever all three inputs are (proposition 1).
    """
    return w * x_audio + (1.0 - w) * x_mri


class FusionHead(nn.Module):
    """Learned fusion map: w = sigmoid(logit(w_static) + g(h, x_a, x_m)).

    g is three 3x3 convolutions over the channels [x_a, x_m, broadcast Linear(h)]; its last
    layer starts at zero, so training starts from the static map. The head reads the images
    detached: it learns to weigh them, not to change them.

    Args:
        embedding_dim: E.
        channels: width of the hidden convolutions.
        audio_channels: number of channels the embedding is projected to.
    """

    def __init__(self, embedding_dim: int, channels: int = 16, audio_channels: int = 8) -> None:
        super().__init__()
        self.audio_proj = nn.Linear(embedding_dim, audio_channels)
        self.net = nn.Sequential(
            nn.Conv2d(2 + audio_channels, channels, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(channels, 1, 3, padding=1),
        )
        last = self.net[-1]
        assert isinstance(last, nn.Conv2d)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, embeddings: Tensor, x_audio: Tensor, x_mri: Tensor, prior: Tensor) -> Tensor:
        """Predict the fusion map.

        Args:
            embeddings: (B, E) float32.
            x_audio: (B, H, W) float32 audio-branch image.
            x_mri: (B, H, W) float32 MRI-branch image.
            prior: (H, W) float32 static map in [0, 1] (clamped to [1e-3, 1 - 1e-3]).

        Returns:
            (B, H, W) float32 w in (0, 1).
        """
        height, width = x_audio.shape[-2:]
        audio = self.audio_proj(embeddings)[:, :, None, None].expand(-1, -1, height, width)
        # Features only: through them, L_mask (which rewards w -> 1) would reshape the decoder's
        # image and the arm weights to raise w, and did (a --no-audio top-K model's decoder
        # saturated and its sum p reached 11).
        images = torch.stack([x_audio.detach(), x_mri.detach()], dim=1)  # (B, 2, H, W)
        features = torch.cat([images, audio], dim=1)  # (B, 2+Ca, H, W)
        correction = self.net(features)[:, 0]  # (B, H, W)
        prior_logit = torch.logit(prior.clamp(_PRIOR_CLAMP, 1.0 - _PRIOR_CLAMP))  # (H, W)
        return torch.sigmoid(prior_logit + correction)


class SiremNet(nn.Module):
    """SIREM: fused audio and MRI branches with learned spiral-arm weights.

    Trainable: the decoder, the arm logits l (init 0) and, in ``learned`` fusion mode, the head.
    The static fusion map is a persistent buffer (set it with :meth:`set_static_eba`).

    Args:
        config: the model configuration.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.embedding_dim < 1:
            raise InputError("the model's embedding_dim must be set (>= 1) before it is built")
        self.config = config
        height, width = config.image_size
        self.decoder = AudioDecoder(
            config.embedding_dim, config.image_size, config.decoder_hidden, config.dropout
        )
        self.arm_logits = nn.Parameter(torch.zeros(config.n_arms))
        self.register_buffer("static_eba", torch.full((height, width), 0.5))
        # Per-dimension standardization of the frozen embeddings (training-set statistics,
        # saved with the weights): encoders such as log-mel statistics are far from zero mean
        # and unit scale, which the decoder's first layer otherwise has to learn slowly.
        self.register_buffer("embedding_mean", torch.zeros(config.embedding_dim))
        self.register_buffer("embedding_std", torch.ones(config.embedding_dim))
        self.fusion_head: FusionHead | None = None
        self.residual_w: nn.Parameter | None = None
        if config.fusion == "residual":
            # x = x_m + w (x_a - x_m): w = 0 is exactly the MRI branch, where training starts.
            self.residual_w = nn.Parameter(torch.zeros(height, width))
        elif config.eba_mode == "learned":
            self.fusion_head = FusionHead(
                config.embedding_dim, config.head_channels, config.head_audio_channels
            )

    def set_static_eba(self, eba_map: Tensor) -> None:
        """Set the static fusion map.

        Args:
            eba_map: (H, W) float32 in [0, 1], e.g. the mean of the training frames' maps.
        """
        if tuple(eba_map.shape) != self.config.image_size:
            raise ShapeError(
                f"static eba map: expected {self.config.image_size}, got {tuple(eba_map.shape)}"
            )
        with torch.no_grad():
            self.static_eba.copy_(eba_map.to(self.static_eba).clamp(0.0, 1.0))

    def arm_weights(self) -> tuple[Tensor, Tensor]:
        """Return (p, p_used), both (A,) float32: sigmoid(l) and the weights applied to k-space."""
        p = torch.sigmoid(self.arm_logits)
        if self.config.arm_select == "topk":
            return p, topk_straight_through(p, self.config.arm_topk)
        return p, p

    def set_embedding_norm(self, mean: Tensor, std: Tensor) -> None:
        """Set the embedding standardization (E,) mean and std (std floored at 1e-6)."""
        with torch.no_grad():
            self.embedding_mean.copy_(mean.to(self.embedding_mean))
            self.embedding_std.copy_(std.to(self.embedding_std).clamp_min(1e-6))

    def _audio_input(self, embeddings: Tensor) -> Tensor:
        if self.config.no_audio:
            return torch.zeros_like(embeddings)
        return (embeddings - self.embedding_mean) / self.embedding_std

    def fuse_branches(
        self, embeddings: Tensor, x_mri: Tensor, eba: Tensor | None, p: Tensor, p_used: Tensor
    ) -> SiremOutput:
        """Run the audio branch and fuse it with a given MRI-branch image.

        Args:
            embeddings: (B, E) float32 cached audio embeddings (zeroed when ``no_audio``).
            x_mri: (B, H, W) float32 MRI-branch image in [0, 1].
            eba: (B, H, W) float32 per-frame maps; required in ``frame`` mode, else ignored.
            p: (A,) soft arm weights.
            p_used: (A,) arm weights that produced ``x_mri``.

        Returns:
            The :class:`SiremOutput`.
        """
        if embeddings.ndim != 2 or embeddings.shape[0] != x_mri.shape[0]:
            raise ShapeError(
                f"embeddings: expected (B, E) with B = {x_mri.shape[0]}, "
                f"got {tuple(embeddings.shape)}"
            )
        audio_in = self._audio_input(embeddings.to(torch.float32))
        x_audio = self.decoder(audio_in)  # (B, H, W)
        if x_audio.shape != x_mri.shape:
            raise ShapeError(
                f"MRI branch image {tuple(x_mri.shape)} does not match the model's image size "
                f"{self.config.image_size}"
            )
        if self.residual_w is not None:
            w = self.residual_w.clamp(0.0, 1.0).expand_as(x_audio)
            recon = x_mri + w * (x_audio - x_mri)
            return SiremOutput(recon, x_audio, x_mri, w, p, p_used)
        mode = self.config.eba_mode
        if mode == "frame":
            if eba is None:
                raise InputError(
                    "eba_mode 'frame' needs the per-frame explained-by-audio maps (eba)"
                )
            if eba.shape != x_audio.shape:
                raise ShapeError(f"eba: expected {tuple(x_audio.shape)}, got {tuple(eba.shape)}")
            w = eba.to(x_audio.dtype)
        elif mode == "learned":
            assert self.fusion_head is not None
            w = self.fusion_head(audio_in, x_audio, x_mri, self.static_eba)
        else:
            w = self.static_eba.expand_as(x_audio)
        return SiremOutput(fuse(x_audio, x_mri, w), x_audio, x_mri, w, p, p_used)

    def forward(
        self,
        embeddings: Tensor,
        arm_images: Tensor,
        eba: Tensor | None = None,
        arms: Tensor | None = None,
    ) -> SiremOutput:
        """Reconstruct frames from embeddings and precomputed arm images.

        Args:
            embeddings: (B, E) float32 cached audio embeddings.
            arm_images: (B, N, H, W) complex64 per-arm coil-combined images.
            eba: (B, H, W) float32 per-frame maps (``frame`` mode only).
            arms: (B, N) interleaf index of each arm image (None: all A interleaves in
                order, N = A).

        Returns:
            The :class:`SiremOutput`; ``recon`` is (B, H, W) float32 in [0, 1].
        """
        p, p_used = self.arm_weights()
        p_frame = frame_arm_weights(p_used, arms, arm_images.shape[0])
        x_mri = mri_branch_from_arm_images(p_frame, arm_images, self.config.mri_eps)
        return self.fuse_branches(embeddings, x_mri, eba, p, p_used)

    def forward_kspace(
        self,
        embeddings: Tensor,
        kspace: Tensor,
        sense: Any,
        dcf: Tensor,
        eba: Tensor | None = None,
    ) -> SiremOutput:
        """Like :meth:`forward`, from k-space through the SENSE adjoint.

        Args:
            embeddings: (B, E) float32.
            kspace: (B, C, N, S) complex64.
            sense: the :class:`~sirem_cli.mri.sense.FrameSenseOp` of these B frames (its
                ``arms`` (B, N) and differentiable ``adjoint``).
            dcf: (I, S) float32 density compensation of the interleaf table.
            eba: (B, H, W) float32 (``frame`` mode only).

        Returns:
            The :class:`SiremOutput`.
        """
        p, p_used = self.arm_weights()
        arms = torch.as_tensor(sense.arms, device=p_used.device, dtype=torch.long)  # (B, N)
        p_frame = frame_arm_weights(p_used, arms, kspace.shape[0])
        x_mri = mri_branch_from_kspace(
            p_frame, kspace, dcf[arms], sense.adjoint, self.config.mri_eps
        )
        return self.fuse_branches(embeddings, x_mri, eba, p, p_used)

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        """Eval mode without gradients, restoring the training flag afterwards."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            self.train(was_training)

    def reconstruct(
        self,
        embeddings: Tensor,
        arm_images: Tensor,
        eba: Tensor | None = None,
        arms: Tensor | None = None,
    ) -> Tensor:
        """Inference: :meth:`forward`'s (B, H, W) float32 reconstructions in [0, 1], in eval
        mode and without gradients (same arguments)."""
        with self._inference():
            return self.forward(embeddings, arm_images, eba, arms).recon

    def reconstruct_kspace(
        self,
        embeddings: Tensor,
        kspace: Tensor,
        sense: Any,
        dcf: Tensor,
        eba: Tensor | None = None,
    ) -> Tensor:
        """Inference from k-space: :meth:`forward_kspace`'s (B, H, W) float32 reconstructions in
        [0, 1], in eval mode and without gradients (same arguments)."""
        with self._inference():
            return self.forward_kspace(embeddings, kspace, sense, dcf, eba).recon
