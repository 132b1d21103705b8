"""Frame transformations of HAP-VR's strong view (FT, from S2VS): text overlay, emoji overlay and Gaussian blur,
decided and drawn for every frame on its own, as the reference does (datasets/transforms/frame_trans.py applies
its PIL chain frame by frame: text with p_overlay, then emoji with p_overlay, then blur with p_blur).

Frames are (C, H, W), clips (T, C, H, W), uint8 in 0..255 or float in 0..1; outputs keep dtype and layout.
Reference ranges kept: text height and emoji side 0.2-0.5 of the short side, opacity 0.7-1, top-left corner
uniform over the positions where the overlay fits, text colour uniform RGB, blur sigma (PIL's "radius") 0.1-2.
Differences, because nothing is downloaded here:
- Text is drawn with OpenCV's built-in Hershey fonts (cv2.putText, antialiased, 8 faces, upright or italic) from
  printable ASCII; the reference draws random characters of AugLy's TrueType fonts with PIL.
- Emoji are not AugLy's PNG files (there are none here): each is a procedurally drawn emoji-like glyph, a filled
  disc in an emoji colour with two eyes (open, closed or winking) and a mouth (smile, frown, "o" or flat).
- Blur is a true Gaussian (kernel radius ceil(3 sigma), reflected borders); PIL approximates it with box blurs.
"""
from __future__ import annotations

import math
import string

import cv2
import numpy as np
import torch
import torch.nn.functional as nnf

from dataloaders.video_video.temporal import full_scale

OVERLAY_SIZE = (0.2, 0.5)  # text height / emoji side, as a share of the frame's short side
OPACITY = (0.7, 1.0)
BLUR_SIGMA = (0.1, 2.0)
TEXT_SAMPLE_LENGTH = 100  # characters drawn before the longest prefix that fits is chosen (the reference's 100)
_CHARACTERS = np.array(list(string.ascii_letters + string.digits + string.punctuation + " "))
_FACES = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX,
          cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_COMPLEX_SMALL, cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
          cv2.FONT_HERSHEY_SCRIPT_COMPLEX)
_EMOJI_COLOURS = np.array([(255, 204, 77), (255, 172, 51), (244, 144, 12), (255, 120, 160), (120, 200, 80),
                           (90, 170, 255), (230, 80, 70), (170, 110, 220)], dtype=np.float32)


def composite(frame: torch.Tensor, colour: np.ndarray, alpha: np.ndarray, top: int, left: int) -> torch.Tensor:
    """Alpha-blend `colour` (3,) or (h, w, 3) in 0..255 with weights `alpha` (h, w) in 0..1 into `frame` (C, H, W)
    at (top, left), in place; pixels outside the (h, w) box are untouched. Returns `frame`."""
    h, w = alpha.shape
    region = frame[:, top:top + h, left:left + w]
    scale = full_scale(frame.dtype) / 255.0
    paint = torch.from_numpy(np.ascontiguousarray(colour, dtype=np.float32) * scale)
    paint = paint.permute(2, 0, 1) if paint.ndim == 3 else paint[:, None, None]
    weight = torch.from_numpy(alpha.astype(np.float32))[None]
    mixed = region.float() + (paint - region.float()) * weight
    mixed = mixed.clamp_(0, 1) if frame.dtype.is_floating_point else mixed.round_().clamp_(0, 255)
    region.copy_(mixed.to(frame.dtype))
    return frame


def _text_box(text: str, face: int, scale: float, thickness: int) -> tuple[int, int, int]:
    """(width, height above the baseline, full height) of `text` drawn by cv2.putText."""
    (width, height), baseline = cv2.getTextSize(text, face, scale, thickness)
    return width, height, height + baseline + thickness


def overlay_text(frame: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """A random string in a random Hershey font, colour and opacity over `frame` (C, H, W), in place; the
    string is the longest random prefix that fits in the frame's width, cut to a random length (as the reference)."""
    _, height, width = frame.shape
    face = int(_FACES[rng.integers(len(_FACES))]) | (cv2.FONT_ITALIC if rng.random() < 0.5 else 0)
    text_px = max(1, int(min(height, width) * rng.uniform(*OVERLAY_SIZE)))
    thickness = max(1, text_px // 12)
    scale = text_px / max(1, _text_box("Ag", face, 1.0, thickness)[2])  # the full box is text_px high
    text = "".join(rng.choice(_CHARACTERS, TEXT_SAMPLE_LENGTH))

    def fits(n: int) -> bool:
        box = _text_box(text[:n], face, scale, thickness)
        return box[0] <= width and box[2] <= height

    low, high = 0, len(text)  # widths grow with the prefix: binary search for the longest that fits
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if fits(mid) else (low, mid - 1)
    if low == 0:
        return frame
    text = text[:int(rng.integers(1, low + 1))]
    text_w, text_h, box_h = _text_box(text, face, scale, thickness)
    left = int(rng.random() * (width - text_w))
    top = int(rng.random() * (height - box_h))
    opacity = rng.uniform(*OPACITY)
    colour = rng.integers(0, 256, 3).astype(np.float32)
    mask = np.zeros((box_h, text_w), dtype=np.uint8)
    cv2.putText(mask, text, (0, text_h), face, scale, 255, thickness, cv2.LINE_AA)
    return composite(frame, colour, mask.astype(np.float32) * (opacity / 255.0), top, left)


def draw_emoji(side: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A procedural emoji-like face: colour (side, side, 3) float32 in 0..255 and coverage (side, side) in 0..1."""
    canvas = np.zeros((side, side, 3), dtype=np.uint8)
    mask = np.zeros((side, side), dtype=np.uint8)
    centre, radius = (side // 2, side // 2), max(1, side // 2 - 1)
    face = _EMOJI_COLOURS[rng.integers(len(_EMOJI_COLOURS))] * rng.uniform(0.85, 1.0)
    ink = tuple(int(v) for v in rng.integers(20, 90, 3))
    cv2.circle(canvas, centre, radius, tuple(float(v) for v in face), -1, cv2.LINE_AA)
    cv2.circle(mask, centre, radius, 255, -1, cv2.LINE_AA)
    line = max(1, side // 24)
    eye_y, eye_dx, eye_r = int(side * 0.4), int(side * 0.17), max(1, side // 14)
    style = int(rng.integers(3))  # open, closed, wink
    for k, x in enumerate((side // 2 - eye_dx, side // 2 + eye_dx)):
        if style == 0 or (style == 2 and k == 0):
            cv2.circle(canvas, (x, eye_y), eye_r, ink, -1, cv2.LINE_AA)
        else:
            cv2.line(canvas, (x - eye_r, eye_y), (x + eye_r, eye_y), ink, line, cv2.LINE_AA)
    mouth_c, mouth_w, mouth_h = (side // 2, int(side * 0.62)), max(1, int(side * 0.22)), max(1, int(side * 0.12))
    mouth = int(rng.integers(4))  # smile, frown, "o", flat
    if mouth == 0:
        cv2.ellipse(canvas, (mouth_c[0], mouth_c[1] - mouth_h), (mouth_w, mouth_h), 0, 20, 160, ink, line, cv2.LINE_AA)
    elif mouth == 1:
        cv2.ellipse(canvas, (mouth_c[0], mouth_c[1] + mouth_h), (mouth_w, mouth_h), 0, 200, 340, ink, line,
                    cv2.LINE_AA)
    elif mouth == 2:
        cv2.ellipse(canvas, mouth_c, (mouth_h, mouth_h), 0, 0, 360, ink, -1, cv2.LINE_AA)
    else:
        cv2.line(canvas, (mouth_c[0] - mouth_w, mouth_c[1]), (mouth_c[0] + mouth_w, mouth_c[1]), ink, line,
                 cv2.LINE_AA)
    return canvas.astype(np.float32), mask.astype(np.float32) / 255.0


def overlay_emoji(frame: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """A procedural emoji (see `draw_emoji`) of random size, place and opacity over `frame` (C, H, W), in place."""
    _, height, width = frame.shape
    side = int(min(height, width) * rng.uniform(*OVERLAY_SIZE))
    if side < 4:
        return frame
    left = int(rng.random() * (width - side))
    top = int(rng.random() * (height - side))
    opacity = rng.uniform(*OPACITY)
    colour, coverage = draw_emoji(side, rng)
    return composite(frame, colour, coverage * opacity, top, left)


def gaussian_blur(frames: torch.Tensor, sigmas: np.ndarray) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, H, W), same dtype: frame n blurred with standard deviation sigmas[n] (pixels), all
    frames in one grouped convolution (each frame's channels are groups with that frame's kernel)."""
    n, c, h, w = frames.shape
    radius = min(int(math.ceil(3 * float(np.max(sigmas)))), h - 1, w - 1)
    if n == 0 or radius < 1:
        return frames.clone()
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    sigma = torch.as_tensor(np.asarray(sigmas, dtype=np.float32))[:, None]
    kernels = torch.exp(-offsets[None] ** 2 / (2 * sigma ** 2))
    kernels = (kernels / kernels.sum(1, keepdim=True)).repeat_interleave(c, dim=0)  # (N * C, 2r + 1)
    x = nnf.pad(frames.float().reshape(1, n * c, h, w), (radius,) * 4, mode="reflect")
    x = nnf.conv2d(x, kernels[:, None, :, None], groups=n * c)
    x = nnf.conv2d(x, kernels[:, None, None, :], groups=n * c).reshape(n, c, h, w)
    x = x.clamp_(0, 1) if frames.dtype.is_floating_point else x.round_().clamp_(0, 255)
    return x.to(frames.dtype)


def frame_transforms(clip: torch.Tensor, rng: np.random.Generator, p_overlay: float = 0.3,
                     p_blur: float = 0.5) -> torch.Tensor:
    """(T, C, H, W) -> new (T, C, H, W): per frame, text with p_overlay, then an emoji with p_overlay, then blur
    with p_blur, each decided and parameterised for that frame alone."""
    coins = rng.random((clip.shape[0], 3))
    out = clip.clone()
    for t in np.flatnonzero((coins[:, 0] < p_overlay) | (coins[:, 1] < p_overlay)):  # only the frames drawn on
        if coins[t, 0] < p_overlay:
            overlay_text(out[t], rng)
        if coins[t, 1] < p_overlay:
            overlay_emoji(out[t], rng)
    blurred = np.flatnonzero(coins[:, 2] < p_blur)
    if len(blurred):
        index = torch.from_numpy(blurred)
        out[index] = gaussian_blur(out[index], rng.uniform(*BLUR_SIGMA, len(blurred)))
    return out
