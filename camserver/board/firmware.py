"""Firmware images for updates over the air: checks on upload, the files under storage.dir/firmware/,
and one-time download links.

An ESP32 app image (the .bin PlatformIO or the Arduino IDE builds) starts with a 24-byte header whose
first byte is 0xE9, then the first segment's 8-byte header, then that segment, which in an ESP-IDF or
Arduino app begins with the app descriptor (esp_app_desc_t, magic 0xABCD5432). The descriptor of an
Arduino build names the core's library build, not the sketch, so the camserver firmware also carries
"camserver-firmware-version:<version>" in its image; that marker wins when present.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import struct
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

ESP_IMAGE_MAGIC = 0xE9
APP_DESC_MAGIC = 0xABCD5432
APP_DESC_OFFSET = 24 + 8  # image header + first segment header
MAX_SEGMENTS = 16  # ESP_IMAGE_MAX_SEGMENTS
OTA_SLOT_BYTES = 0x1E0000  # app0/app1 of firmware/esp32_stream/partitions.csv (min_spiffs.csv)
VERSION_MARKER = b"camserver-firmware-version:"
LINK_LIFETIME_S = 600.0
MAX_LINKS = 256
# matched with fullmatch: `$` would also match before a final newline ("a.bin\n")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\.bin")
# esp_image_header_t chip_id
CHIPS = {0x0000: "esp32", 0x0002: "esp32s2", 0x0005: "esp32c3", 0x0009: "esp32s3", 0x000C: "esp32c2",
         0x000D: "esp32c6", 0x0010: "esp32h2", 0x0012: "esp32p4"}


class BadImage(ValueError):
    """An upload that is not an app image the boards can take; the text says why."""

    def __init__(self, text: str, too_large: bool = False) -> None:
        super().__init__(text)
        self.too_large = too_large


@dataclass(frozen=True)
class ImageInfo:
    """What the server knows of one firmware image."""

    name: str
    size: int
    md5: str
    version: str | None  # the camserver marker's, else the app descriptor's, else None
    project: str | None  # the app descriptor's project name
    chip: str | None
    idf: str | None  # the ESP-IDF version it was built with

    def to_json(self) -> dict[str, Any]:
        """The record GET /api/firmware lists."""
        return asdict(self)


def _c_string(raw: bytes) -> str | None:
    text = raw.split(b"\0", 1)[0].decode("ascii", "replace").strip()
    return text if text and text.isprintable() else None


def inspect_image(name: str, data: bytes, max_bytes: int = OTA_SLOT_BYTES) -> ImageInfo:
    """Check an uploaded image and read its version.

    Raises:
        BadImage: wrong magic byte, implausible header, or larger than an OTA app slot (too_large).
    """
    if not data or data[0] != ESP_IMAGE_MAGIC:
        first = f"0x{data[0]:02X}" if data else "nothing"
        raise BadImage(f"not an ESP32 app image: it starts with {first}, not 0xE9. Upload the app .bin "
                       "(PlatformIO: .pio/build/esp32cam/firmware.bin; Arduino IDE: Sketch > Export Compiled "
                       "Binary, the .ino.bin), not the merged or bootloader image")
    if len(data) > max_bytes:
        raise BadImage(f"the image is {len(data)} bytes; an OTA app slot holds {max_bytes} (0x{max_bytes:X})",
                       too_large=True)
    if len(data) < APP_DESC_OFFSET or not 1 <= data[1] <= MAX_SEGMENTS:
        raise BadImage("not an ESP32 app image: its header is cut short or names no segments")
    chip_id = struct.unpack_from("<H", data, 12)[0]
    project = idf = desc_version = None
    if len(data) >= APP_DESC_OFFSET + 144 and struct.unpack_from("<I", data, APP_DESC_OFFSET)[0] == APP_DESC_MAGIC:
        desc = data[APP_DESC_OFFSET:APP_DESC_OFFSET + 144]
        desc_version, project, idf = _c_string(desc[16:48]), _c_string(desc[48:80]), _c_string(desc[112:144])
    version = desc_version
    at = data.find(VERSION_MARKER)
    if at >= 0:
        start = at + len(VERSION_MARKER)
        marked = _c_string(data[start:start + 32])
        if marked and re.fullmatch(r"[A-Za-z0-9._+-]{1,31}", marked):
            version = marked
    return ImageInfo(name, len(data), hashlib.md5(data).hexdigest(), version, project, CHIPS.get(chip_id), idf)


class FirmwareStore:
    """Image files in one folder. Synchronous (disk work): call it from an executor."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._infos: dict[str, tuple[tuple[int, int], ImageInfo]] = {}  # name -> ((size, mtime_ns), info)

    def open(self) -> None:
        """Create the folder; remove uploads a crash left half-written."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for partial in self.directory.glob(".upload-*"):
            partial.unlink(missing_ok=True)

    def path(self, name: str) -> Path:
        """Where an image of this name is kept (the name is checked first)."""
        if not NAME_RE.fullmatch(name):
            raise ValueError(f"image names are letters, digits, '.', '_', '-', up to 64, ending .bin; not {name!r}")
        return self.directory / name

    def save(self, name: str, data: bytes) -> ImageInfo:
        """Check and store an upload.

        Raises:
            ValueError: a bad name. BadImage: not an image a board can take. FileExistsError: the name is taken.
        """
        target = self.path(name)
        info = inspect_image(name, data)
        if target.exists():
            raise FileExistsError(name)
        partial = self.directory / f".upload-{secrets.token_hex(8)}"
        try:
            with open(partial, "wb") as fh:  # the whole file, then its name: a crash never leaves half an image
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.link(partial, target)  # unlike a rename, refuses a name taken meanwhile (FileExistsError)
        finally:
            partial.unlink(missing_ok=True)
        self._remember(target, info)
        return info

    def _remember(self, path: Path, info: ImageInfo) -> None:
        st = path.stat()
        self._infos[path.name] = ((st.st_size, st.st_mtime_ns), info)

    def info(self, name: str) -> ImageInfo | None:
        """One image's record, or None (cached per file size and time, so listing does not rehash)."""
        try:
            path = self.path(name)
            st = path.stat()
        except (ValueError, FileNotFoundError):
            return None
        cached = self._infos.get(name)
        if cached is not None and cached[0] == (st.st_size, st.st_mtime_ns):
            return cached[1]
        try:
            info = inspect_image(name, path.read_bytes(), max_bytes=1 << 30)
        except (BadImage, OSError):
            return None
        self._remember(path, info)
        return info

    def images(self) -> list[ImageInfo]:
        """Every stored image, by name."""
        if not self.directory.is_dir():
            return []
        infos = (self.info(p.name) for p in sorted(self.directory.glob("*.bin")))
        return [i for i in infos if i is not None]

    def read(self, name: str) -> bytes | None:
        """An image's bytes as they are on disk now, or None."""
        try:
            return self.path(name).read_bytes()
        except (ValueError, FileNotFoundError):
            return None

    def delete(self, name: str) -> bool:
        """Remove an image; False if there was none."""
        try:
            self.path(name).unlink()
        except (ValueError, FileNotFoundError):
            return False
        self._infos.pop(name, None)
        return True


@dataclass
class OtaLink:
    """A one-time download of one image for one camera."""

    token: str
    camera: str
    image: str
    md5: str
    size: int
    expires_at: float  # wall-clock label, shown; the link's life runs on `deadline`
    deadline: float  # steady time (see __init__'s `steady`) past which the link is void
    used: bool = False


class OtaLinks:
    """Random, one-time, short-lived download tokens. Kept in memory: a restart voids them all.

    A link's lifetime runs on `steady` (monotonic) time, so a wall-clock step neither voids it early
    nor keeps it alive; `clock` (wall) only labels its `expires_at`.
    """

    def __init__(self, clock: Callable[[], float] = time.time, lifetime_s: float = LINK_LIFETIME_S,
                 max_links: int = MAX_LINKS, steady: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.steady = steady
        self.lifetime_s = lifetime_s
        self.max_links = max_links
        self._links: dict[str, OtaLink] = {}

    def create(self, camera: str, image: str, md5: str, size: int) -> OtaLink:
        """A new link; a camera's earlier unused link is void from now on."""
        now = self.steady()
        for token, link in list(self._links.items()):
            if link.used or link.deadline <= now or link.camera == camera:
                del self._links[token]
        while len(self._links) >= self.max_links:
            del self._links[min(self._links.values(), key=lambda link: link.deadline).token]
        link = OtaLink(secrets.token_urlsafe(24), camera, image, md5, size, self.clock() + self.lifetime_s,
                       now + self.lifetime_s)
        self._links[link.token] = link
        return link

    def take(self, token: str) -> OtaLink | None:
        """The link if it is known, unused and not expired, marking it used; otherwise None."""
        link = self._links.get(token)
        if link is None or link.used or link.deadline <= self.steady():
            return None
        link.used = True
        return link
