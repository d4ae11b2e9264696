"""Face crop -> model input, per the checkpoint's own spec; train-time augmentation."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
import torch

from .checkpoints import ModelSpec


def resize_face(face: np.ndarray, size: int) -> np.ndarray:
    """RGB uint8 (h, w, 3) -> (size, size, 3); area filter when shrinking (no aliasing)."""
    h, w = face.shape[:2]
    if (h, w) == (size, size):
        return face
    interp = cv2.INTER_AREA if min(h, w) > size else cv2.INTER_LINEAR
    return cv2.resize(face, (size, size), interpolation=interp)


def luminance(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB -> (B, 1, H, W) luminance with torchvision's weights (rgb_to_grayscale: 0.2989, 0.587,
    0.114), in float32 for uint8 input: the one grey that training, augmentation and the app all use."""
    from torchvision.transforms.functional import rgb_to_grayscale

    return rgb_to_grayscale(x.float() if x.dtype == torch.uint8 else x)


def grey_uint8(x_u8: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> the same faces in grey, uint8 (B, 3, H, W): what a grayscale model reads."""
    return luminance(x_u8).round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()


def faces_to_uint8(faces: Sequence[np.ndarray], spec: ModelSpec) -> torch.Tensor:
    """List of RGB uint8 faces -> uint8 tensor (B, 3, S, S)."""
    arr = np.stack([resize_face(f, spec.input_size) for f in faces])
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).contiguous()
    return grey_uint8(x) if spec.grayscale else x


GRAY_TOLERANCE = 8  # largest |R - G| or |G - B| (levels 0-255) of a black-and-white photo saved in colour


def grayscale_mask(x_uint8: torch.Tensor, spec: ModelSpec | None = None) -> torch.Tensor:
    """uint8 faces (B, 3, S, S) -> bool (B,): the faces whose three channels agree, black-and-white photos
    (all of FER2013, a sixth of RAF-DB), which get their own calibration temperature; all of them for a
    spec whose model sees grayscale."""
    if spec is not None and spec.grayscale:
        return torch.ones(len(x_uint8), dtype=torch.bool)
    x = x_uint8.to(torch.int16)
    return (((x[:, 0] - x[:, 1]).abs().amax((1, 2)) <= GRAY_TOLERANCE)
            & ((x[:, 1] - x[:, 2]).abs().amax((1, 2)) <= GRAY_TOLERANCE))


def mean_std(spec: ModelSpec, device: torch.device | str = "cpu",
             dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """The spec's normalisation mean and std as (1, 3, 1, 1) tensors (a loop builds them once)."""
    return tuple(torch.tensor(v, dtype=dtype, device=device).view(1, 3, 1, 1) for v in (spec.mean, spec.std))


def standardize(x01: torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    """float (B, 3, S, S) in [0, 1] -> normalised with the spec's mean/std, on x01's device and dtype."""
    mean, std = mean_std(spec, x01.device, x01.dtype)
    return (x01 - mean) / std


def normalize(x_uint8: torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    """uint8 (B, 3, S, S) -> float32 normalised with the spec's mean/std."""
    return standardize(x_uint8.float() / 255.0, spec)


@dataclass(frozen=True)
class AugmentOptions:
    """Each augmentation is switchable; probabilities/magnitudes are per-sample."""

    flip: bool = True
    rotation: float = 10.0  # degrees, 0 = off
    crop: bool = True  # scale/shift jitter like a face detector's box (zoom in and out)
    color_jitter: float = 0.3  # brightness/contrast/saturation strength, 0 = off
    perspective: float = 0.0  # distortion scale, 0 = off
    erasing: float = 0.25  # probability, 0 = off
    grayscale: float = 0.1  # probability (webcam / FER2013-like)
    blur: float = 0.1  # probability of a mild Gaussian blur
    jpeg: float = 0.05  # probability of JPEG re-compression at quality 30-90
    lowres: float = 0.0  # probability of a small-face look: down to 16-40 px, then back up


class BatchAugment:
    """Per-sample augmentation of a uint8 batch (B, 3, S, S) -> float32 in [0, 1].

    Flip, rotation, scale/shift ("crop" jitter like a face detector's box) and colour jitter are
    drawn per sample but applied to the whole batch at once (one affine grid, broadcast gains):
    torchvision.transforms.v2 applied image by image cost as much as the training step itself. Grayscale, blur
    and random erasing are batched too (each drawn sample gets its
    own sigma or box, as torchvision's would, but all of them in one pass: on a GPU, ~60 small
    per-image calls per batch were a launch each). Perspective and JPEG re-compression stay
    torchvision.transforms.v2, applied only to the samples drawn for them.

    The batch may live on a GPU: every random draw is made on the CPU (so a seed gives the same
    augmentation on any device) and moved to the batch's device; JPEG re-compression runs on the CPU.
    """

    def __init__(self, opts: AugmentOptions, size: int) -> None:
        from torchvision.transforms import v2

        self.opts = opts
        self.size = size
        self.v2_u8: list[tuple[float, object]] = []
        if opts.jpeg > 0:
            self.v2_u8.append((opts.jpeg, v2.JPEG((30, 90))))
        self.v2_f: list[tuple[float, object]] = []
        if opts.perspective > 0:
            self.v2_f.append((0.3, v2.RandomPerspective(distortion_scale=opts.perspective, p=1.0)))

    @classmethod
    def _apply_some(cls, x: torch.Tensor, p: float, tf, cpu_only: bool = False) -> torch.Tensor:
        drawn = cls._drawn(x, p)
        if drawn is not None:
            idx = drawn.tolist()
            x = x.clone()
            if cpu_only:  # one copy each way for all drawn samples (a GPU waits once per batch)
                rows = torch.tensor(idx, device=x.device)
                x[rows] = torch.stack([tf(s) for s in x[rows].cpu()]).to(x.device)
            else:
                for i in idx:
                    x[i] = tf(x[i])
        return x

    @staticmethod
    def _drawn(x: torch.Tensor, p: float) -> torch.Tensor | None:
        """Indices (on the CPU) of the samples drawn with probability p; None when none is."""
        idx = (torch.rand(x.shape[0]) < p).nonzero().flatten()
        return idx if len(idx) else None

    @staticmethod
    def _grayscale(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """The drawn samples to 3-channel luminance (torchvision's weights)."""
        idx = idx.to(x.device)
        x = x.clone()
        x[idx] = luminance(x[idx]).expand(-1, 3, -1, -1)
        return x

    @staticmethod
    def _blur(x: torch.Tensor, idx: torch.Tensor, sigma_range: tuple[float, float] = (0.3, 1.5),
              k: int = 5) -> torch.Tensor:
        """A 5-tap Gaussian blur of the drawn samples, each with its own sigma (reflect padding, as
        torchvision's GaussianBlur): one separable grouped convolution for all of them."""
        import torch.nn.functional as F

        n, c = len(idx), x.shape[1]
        sigma = torch.empty(n).uniform_(*sigma_range)
        t = torch.arange(k, dtype=torch.float32) - (k - 1) / 2
        g = torch.exp(-0.5 * (t[None] / sigma[:, None]) ** 2)
        g = (g / g.sum(1, keepdim=True)).repeat_interleave(c, 0).to(x.device, x.dtype)  # (n*c, k)
        idx = idx.to(x.device)
        sub = x[idx].reshape(1, n * c, *x.shape[-2:])
        sub = F.conv2d(F.pad(sub, (k // 2, k // 2, 0, 0), mode="reflect"), g.view(n * c, 1, 1, k), groups=n * c)
        sub = F.conv2d(F.pad(sub, (0, 0, k // 2, k // 2), mode="reflect"), g.view(n * c, 1, k, 1), groups=n * c)
        x = x.clone()
        x[idx] = sub.reshape(n, c, *x.shape[-2:])
        return x

    @staticmethod
    def _erase(x: torch.Tensor, idx: torch.Tensor, value: float = 0.5, scale: tuple[float, float] = (0.02, 0.33),
               ratio: tuple[float, float] = (0.3, 3.3), tries: int = 10) -> torch.Tensor:
        """Random erasing of the drawn samples as torchvision's RandomErasing draws it (area share in
        `scale`, log-uniform aspect ratio, up to `tries` draws until the box fits, else untouched),
        all boxes at once as one mask."""
        n, (hh, ww) = len(idx), x.shape[-2:]
        area = hh * ww * torch.empty(n, tries).uniform_(*scale)
        aspect = torch.exp(torch.empty(n, tries).uniform_(math.log(ratio[0]), math.log(ratio[1])))
        h = torch.sqrt(area * aspect).round().long()
        w = torch.sqrt(area / aspect).round().long()
        fits = (h < hh) & (w < ww)
        first = fits.float().argmax(1)  # the first fitting try of each sample
        ok = fits.any(1)
        h, w = h.gather(1, first[:, None])[:, 0], w.gather(1, first[:, None])[:, 0]
        top = (torch.rand(n) * (hh - h + 1)).floor().long().clamp(max=hh - 1)
        left = (torch.rand(n) * (ww - w + 1)).floor().long().clamp(max=ww - 1)
        rows, cols = torch.arange(hh), torch.arange(ww)
        mask = (((rows[None] >= top[:, None]) & (rows[None] < (top + h)[:, None]))[:, :, None]
                & ((cols[None] >= left[:, None]) & (cols[None] < (left + w)[:, None]))[:, None, :]
                & ok[:, None, None])
        idx, mask = idx.to(x.device), mask.to(x.device)[:, None]
        x = x.clone()
        x[idx] = torch.where(mask, torch.full((), value, dtype=x.dtype, device=x.device), x[idx])
        return x

    def _low_resolution(self, x: torch.Tensor, p: float) -> torch.Tensor:
        """A face found small in a photo and upscaled by the app: the drawn samples go down to one
        random size of 16-40 px (area averaging) and back up (bilinear), as one batch."""
        import torch.nn.functional as F

        idx = self._drawn(x, p)
        if idx is None:
            return x
        idx = idx.to(x.device)
        side = int(torch.randint(16, 41, ()).item())
        small = F.interpolate(x[idx], size=(side, side), mode="area")
        x = x.clone()
        x[idx] = F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False).clamp(0, 1)
        return x

    def __call__(self, x_uint8: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        o = self.opts
        for p, tf in self.v2_u8:
            x_uint8 = self._apply_some(x_uint8, p, tf, cpu_only=True)
        x = x_uint8.float() / 255.0
        b, dev = x.shape[0], x.device
        if o.flip or o.rotation > 0 or o.crop:
            ang = (torch.rand(b) * 2 - 1) * math.radians(o.rotation)
            scale = torch.exp((torch.rand(b) * 2 - 1) * math.log(1.18)) if o.crop else torch.ones(b)
            shift = (torch.rand(b, 2) * 2 - 1) * 0.16 if o.crop else torch.zeros(b, 2)
            flip = torch.where(torch.rand(b) < 0.5, -1.0, 1.0) if o.flip else torch.ones(b)
            cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
            theta = torch.stack(
                [torch.stack([cos * flip, -sin, shift[:, 0]], 1), torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1
            )
            grid = F.affine_grid(theta.to(dev), list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        if o.color_jitter > 0:
            c = o.color_jitter
            on = (torch.rand(b, 1, 1, 1) < 0.8).float()
            bright, contrast, sat = (
                (1 + on * (torch.rand(b, 1, 1, 1) * 2 - 1) * c).to(dev) for _ in range(3))
            gray = luminance(x)
            x = gray + (x - gray) * sat
            mean = x.mean((1, 2, 3), keepdim=True)
            x = ((x - mean) * contrast + mean) * bright
            x = x.clamp(0, 1)
        if o.lowres > 0:
            x = self._low_resolution(x, o.lowres)
        for p, tf in self.v2_f:
            x = self._apply_some(x, p, tf)
        for p, fn in ((o.grayscale, self._grayscale), (o.blur, self._blur), (o.erasing, self._erase)):
            if p > 0 and (idx := self._drawn(x, p)) is not None:
                x = fn(x, idx)
        return x
