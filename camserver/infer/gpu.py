"""Decode and letterbox on the device: torchvision's decode_jpeg (nvJPEG on CUDA), then one predict().

On a GPU the CPU would otherwise decode every camera's JPEG, letterbox it and upload the pixels;
here only the JPEG bytes go to the device. The letterbox reproduces ultralytics' own (same scale,
rounding and grey padding, minimal rectangle when the batch's frames share a size), so boxes come
out as from predict() on the decoded frames. It runs on the CPU too (tests compare it with the
OpenCV path there); the service uses it only for torch on CUDA. Not measured on a GPU yet.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from ..detect.base import Detection

log = logging.getLogger(__name__)

PAD_VALUE = 114  # ultralytics' letterbox grey
STRIDE = 32


def available() -> bool:
    """Whether torchvision with decode_jpeg is installed."""
    try:
        from torchvision.io import decode_jpeg  # noqa: F401
    except Exception:  # ImportError, or a torchvision built against another torch
        return False
    return True


def letterbox_params(h: int, w: int, imgsz: int, auto: bool) -> tuple[float, int, int, int, int, int, int]:
    """(ratio, new_w, new_h, top, bottom, left, right) as ultralytics' LetterBox computes them."""
    r = min(imgsz / h, imgsz / w)
    new_w, new_h = max(round(w * r), 1), max(round(h * r), 1)
    dw, dh = imgsz - new_w, imgsz - new_h
    if auto:
        dw, dh = dw % STRIDE, dh % STRIDE
    dw2, dh2 = dw / 2, dh / 2
    return r, new_w, new_h, round(dh2 - 0.1), round(dh2 + 0.1), round(dw2 - 0.1), round(dw2 + 0.1)


class DeviceJpegDetector:
    """An ultralytics torch model fed from JPEG bytes decoded and letterboxed on `device`."""

    def __init__(self, model: Any, predict_args: dict[str, Any], imgsz: int, device: str) -> None:
        self.model = model  # ultralytics YOLO, torch backend
        self.predict_args = dict(predict_args)
        self.imgsz = imgsz
        self.device = device

    def _decode(self, jpegs: Sequence[bytes]) -> list[Any]:
        import torch
        from torchvision.io import ImageReadMode, decode_jpeg

        datas = [torch.frombuffer(bytearray(j), dtype=torch.uint8) for j in jpegs]
        try:
            return list(decode_jpeg(datas, mode=ImageReadMode.RGB, device=self.device))
        except RuntimeError:  # one bad JPEG fails the whole call: decode one by one to find it
            out = []
            for data in datas:
                try:
                    out.append(decode_jpeg(data, mode=ImageReadMode.RGB, device=self.device))
                except RuntimeError:
                    out.append(None)
            return out

    def detect_jpegs(self, jpegs: Sequence[bytes]) -> tuple[list[list[Detection]], list[tuple[int, int]]]:
        """Detections and (width, height) per JPEG; (0, 0) and none for one that does not decode."""
        import torch
        import torch.nn.functional as F

        images = self._decode(jpegs)
        good = [i for i, im in enumerate(images) if im is not None]
        per_image: list[list[Detection]] = [[] for _ in jpegs]
        sizes = [(0, 0)] * len(jpegs)
        if not good:
            return per_image, sizes
        shapes = {tuple(images[i].shape[1:]) for i in good}
        auto = len(shapes) == 1  # as ultralytics: a minimal rectangle only when every frame has one size
        batch, params = [], []
        for i in good:
            im = images[i]
            h, w = im.shape[1:]
            p = letterbox_params(h, w, self.imgsz, auto)
            r, new_w, new_h, top, bottom, left, right = p
            x = im.unsqueeze(0).float()
            if (new_h, new_w) != (h, w):
                x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False)
            x = F.pad(x, (left, right, top, bottom), value=PAD_VALUE)
            batch.append(x)
            params.append(p)
            sizes[i] = (w, h)
        tensor = torch.cat(batch).div_(255)
        results = self.model.predict(tensor, **self.predict_args)
        names = self.model.names
        for i, p, result in zip(good, params, results):
            _, new_w, new_h, top, _, left, _ = p
            w, h = sizes[i]  # ultralytics scales x and y back by each side's own rounded gain
            boxes = result.boxes
            if boxes is None or not len(boxes):
                continue
            xyxy = boxes.xyxy.clone()
            xyxy[:, [0, 2]] = ((xyxy[:, [0, 2]] - left) / (new_w / w)).clamp(0, w)
            xyxy[:, [1, 3]] = ((xyxy[:, [1, 3]] - top) / (new_h / h)).clamp(0, h)
            per_image[i] = [
                Detection(int(c), str(names.get(int(c), c)), float(s), tuple(b))
                for b, c, s in zip(xyxy.cpu().tolist(), boxes.cls.cpu().tolist(), boxes.conf.cpu().tolist())
            ]
        return per_image, sizes
