"""The audio branch's image decoder D (paper eq. 11, section 3.3).

D maps one time-pooled audio embedding to an image in [0, 1]:
Linear(E, 1024) - LayerNorm - GELU - Dropout - Linear(1024, 2048) - LayerNorm - GELU - Dropout -
Linear(2048, H*W) - sigmoid. The paper names the layers but gives no dropout rate; we use 0.1.
The sigmoid keeps x_a in [0, 1], which the fusion bound (paper appendix D) assumes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from sirem_cli.errors import ShapeError

DEFAULT_HIDDEN: tuple[int, int] = (1024, 2048)
DEFAULT_DROPOUT = 0.1


class AudioDecoder(nn.Module):
    """MLP decoder from a pooled audio embedding to an image (paper eq. 11).

    Args:
        embedding_dim: E, size of the input embedding.
        image_size: (H, W) of the output image in pixels.
        hidden: widths of the hidden layers; the paper uses (1024, 2048).
        dropout: dropout probability after each hidden GELU (the paper gives none; 0.1).
    """

    def __init__(
        self,
        embedding_dim: int,
        image_size: tuple[int, int],
        hidden: Sequence[int] = DEFAULT_HIDDEN,
        dropout: float = DEFAULT_DROPOUT,
    ) -> None:
        super().__init__()
        if embedding_dim < 1 or len(image_size) != 2 or min(image_size) < 1 or not hidden:
            raise ShapeError(
                f"decoder: need embedding_dim >= 1, image_size (H, W) and at least one hidden "
                f"layer, got {embedding_dim}, {tuple(image_size)}, {tuple(hidden)}"
            )
        self.embedding_dim = int(embedding_dim)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        layers: list[nn.Module] = []
        width = self.embedding_dim
        for size in hidden:
            layers += [nn.Linear(width, size), nn.LayerNorm(size), nn.GELU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, self.image_size[0] * self.image_size[1]))
        self.net = nn.Sequential(*layers)

    def set_output_prior(self, image: Tensor, weight_scale: float = 0.01) -> None:
        """Start the decoder at a prior image (e.g. the mean training target).

        The output layer's bias becomes ``logit(image)`` and its weights are shrunk by
        ``weight_scale``, so the untrained decoder outputs about ``image`` instead of sigmoid
        noise and learns the audio-dependent deviations from it. With 10^3 rather than the
        paper's ~10^5 training steps, a randomly initialized 14.5 M-parameter output layer
        otherwise stays noisy.

        Args:
            image: (H, W) values in [0, 1].
            weight_scale: factor applied to the output layer's initial weights.
        """
        last = self.net[-1]
        prior = image.reshape(-1).to(last.bias).clamp(0.01, 0.99)
        with torch.no_grad():
            last.bias.copy_(torch.log(prior) - torch.log1p(-prior))
            last.weight.mul_(weight_scale)

    def forward(self, embeddings: Tensor) -> Tensor:
        """Decode embeddings to images.

        Args:
            embeddings: (B, E) float32 time-pooled audio embeddings.

        Returns:
            (B, H, W) float32 audio-branch images x_a in [0, 1] (sigmoid output).
        """
        if embeddings.ndim != 2 or embeddings.shape[1] != self.embedding_dim:
            raise ShapeError(
                f"decoder: embeddings must be (B, {self.embedding_dim}), "
                f"got {tuple(embeddings.shape)}"
            )
        logits = self.net(embeddings)  # (B, H*W)
        return torch.sigmoid(logits).reshape(-1, *self.image_size)  # (B, H, W)
