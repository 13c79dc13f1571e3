"""Embeddings for the 2-D projection: one randomly initialised reference ConvNet per modality, the
space DM and AVDD match distributions in, applied alike to real and synthetic samples."""

from __future__ import annotations

import torch

from avdd.data.store import ModalitySpec
from avdd.models.convnet import DEFAULT_ENCODER, ENCODERS, reference_config
from avdd.models.init import init_parameters
from avdd.seeding import generator


@torch.no_grad()
def random_encoder_features(spec: ModalitySpec, modality: str, stored: torch.Tensor, *, seed: int = 0,
                            device: str | torch.device = "cpu", batch_size: int = 256) -> torch.Tensor:
    """(N, D) features of samples in stored units; the encoder depends only on (seed, modality)."""
    net = ENCODERS.get(DEFAULT_ENCODER)(reference_config(spec.shape))
    init_parameters(net, generator(seed, "projection", modality))
    net = net.to(device).eval()
    return torch.cat([net(spec.normalise(chunk.to(device))).cpu() for chunk in stored.split(batch_size)])
