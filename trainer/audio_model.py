"""The audio model: raw int16 PCM → log-mel (inside the module, so it exports) → compact CNN.

Front-end: the STFT is a fixed ``conv1d`` whose kernels are a Hann-windowed DFT basis
(cos and sin rows), power = re² + im², a mel filterbank matmul, then ``log``. The log-mel is
centred per window (its mean over time and frequency is subtracted), which makes the score
independent of the microphone's gain: the development drones were recorded close up indoors,
real ones are far away outdoors.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from skysentry.mel import mel_filterbank

SAMPLE_RATE = 16_000
WINDOW = 16_000


class LogMel(nn.Module):
    """int16/float PCM ``[B, N]`` → centred log-mel ``[B, 1, n_mels, frames]``."""

    def __init__(self, n_fft: int = 512, hop: int = 160, n_mels: int = 64, sample_rate: int = SAMPLE_RATE,
                 fmin: float = 50.0, fmax: float = 8000.0):
        super().__init__()
        n = torch.arange(n_fft, dtype=torch.float64)
        k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)
        window = 0.5 - 0.5 * torch.cos(2 * math.pi * n / n_fft)  # periodic Hann
        phase = 2 * math.pi * k[:, None] * n[None, :] / n_fft
        basis = torch.cat([torch.cos(phase), -torch.sin(phase)]) * window  # [2F, n_fft]
        self.register_buffer("basis", basis.float().unsqueeze(1), persistent=True)
        self.register_buffer("mel", torch.from_numpy(mel_filterbank(n_mels, n_fft, sample_rate, fmin, fmax)))
        self.hop = hop
        self.n_freq = n_fft // 2 + 1

    def forward(self, pcm: torch.Tensor) -> torch.Tensor:
        x = pcm.to(torch.float32) * (1.0 / 32768.0)
        spec = nn.functional.conv1d(x.unsqueeze(1), self.basis, stride=self.hop)  # [B, 2F, T]
        re, im = spec[:, : self.n_freq], spec[:, self.n_freq:]
        power = re * re + im * im
        mel = torch.matmul(self.mel, power)  # [B, M, T]
        logmel = torch.log(mel + 1e-8)
        logmel = logmel - logmel.mean(dim=(1, 2), keepdim=True)
        return logmel.unsqueeze(1)


def _block(c_in: int, c_out: int, convs: int = 2) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(convs):
        layers += [nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                   nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.MaxPool2d(2))


class _LogMelClassifier(nn.Module):
    """What both audio models share: the log-mel front-end, SpecAugment (time and frequency
    masks, in training mode only, so it never reaches the exported graph), BatchNorm, the
    model's :meth:`trunk`, mean + max pooling and one logit (``fc``, sized by the subclass)."""

    def __init__(self, config: dict, *, n_mels: int, hop: int, n_fft: int, dropout: float, spec_augment: float):
        super().__init__()
        self.config = config
        self.spec_augment = spec_augment  # mask-size scale (0: off); training only
        self.frontend = LogMel(n_fft=n_fft, n_mels=n_mels, hop=hop)
        self.norm = nn.BatchNorm2d(1)
        self.dropout = nn.Dropout(dropout)

    def trunk(self, s: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _spec_augment(self, s: torch.Tensor) -> torch.Tensor:
        b, _, m, t = s.shape
        out = s.clone()
        fm, tm = int(m * self.spec_augment) // 8, int(t * self.spec_augment) // 8
        for i in range(b):
            for _ in range(2):
                f = int(torch.randint(0, fm + 1, ()))
                f0 = int(torch.randint(0, m - f + 1, ()))
                out[i, :, f0:f0 + f] = 0
            tt = int(torch.randint(0, tm + 1, ()))
            t0 = int(torch.randint(0, t - tt + 1, ()))
            out[i, :, :, t0:t0 + tt] = 0
        return out

    def forward(self, pcm: torch.Tensor, logits: bool = False) -> torch.Tensor:
        s = self.frontend(pcm)
        if self.training and self.spec_augment > 0:
            s = self._spec_augment(s)
        h = self.trunk(self.norm(s))
        h = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        logit = self.fc(self.dropout(h)).squeeze(1)
        return logit if logits else torch.sigmoid(logit)


class AudioNet(_LogMelClassifier):
    """PCM ``int16 [B, 16000]`` → drone probability ``[B]`` (or the logit with ``logits=True``),
    through a small CNN trained from scratch."""

    def __init__(self, width: int = 12, n_mels: int = 48, hop: int = 256, dropout: float = 0.3,
                 spec_augment: float = 1.0, n_fft: int = 512):
        super().__init__({"width": width, "n_mels": n_mels, "hop": hop, "dropout": dropout,
                          "spec_augment": spec_augment, "n_fft": n_fft},
                         n_mels=n_mels, hop=hop, n_fft=n_fft, dropout=dropout, spec_augment=spec_augment)
        w = width
        self.features = nn.Sequential(_block(1, w, 1), _block(w, 2 * w), _block(2 * w, 4 * w), _block(4 * w, 8 * w))
        self.fc = nn.Linear(16 * w, 1)

    def trunk(self, s: torch.Tensor) -> torch.Tensor:
        return self.features(s)


class AudioEffNet(_LogMelClassifier):
    """PCM ``int16 [B, 16000]`` → drone probability ``[B]``, over an ImageNet-pretrained trunk.

    The log-mel image goes through the stem and the first ``blocks`` MBConv blocks of
    EfficientNet-Lite0 (the vision model's backbone and weights, :mod:`trainer.vision_model`);
    the stem's RGB kernels are summed into one input channel. ImageNet features transfer to
    spectrograms far better than a small CNN learns from ~1k windows (the classic result
    behind ImageNet-initialised audio taggers). Blocks ``[0, 11)`` end at stride 16 with 112
    channels; the later, larger stages are left out to keep the model small and fast.
    """

    def __init__(self, n_mels: int = 64, hop: int = 160, n_fft: int = 512, blocks: int = 11, dropout: float = 0.3,
                 spec_augment: float = 1.0, pretrained: bool = True):
        super().__init__({"arch": "effnet", "n_mels": n_mels, "hop": hop, "n_fft": n_fft, "blocks": blocks,
                          "dropout": dropout, "spec_augment": spec_augment},
                         n_mels=n_mels, hop=hop, n_fft=n_fft, dropout=dropout, spec_augment=spec_augment)
        from trainer.vision_model import STAGES, EfficientNetLite0

        net = EfficientNetLite0()
        if pretrained:
            net.load_pretrained()
        stem = net.stem
        conv = stem[1]
        mono = nn.Conv2d(1, conv.out_channels, conv.kernel_size, conv.stride, bias=False)
        mono.weight.data.copy_(conv.weight.data.sum(dim=1, keepdim=True))
        stem[1] = mono
        self.stem = stem
        self.blocks = nn.Sequential(*net.blocks[:blocks])
        channels = [out for repeats, *_, out in STAGES for _ in range(repeats)]
        self.fc = nn.Linear(2 * channels[blocks - 1], 1)

    def trunk(self, s: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(s))
