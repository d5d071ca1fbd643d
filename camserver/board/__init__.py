"""Board control: image settings and the flash LED, settings kept per camera, firmware updates over the air."""

from .api import PUBLIC_PREFIX, BoardApi
from .firmware import OTA_SLOT_BYTES, BadImage, ImageInfo, inspect_image
from .service import BoardService
from .settings import check_configured, merge_settings

__all__ = ["PUBLIC_PREFIX", "OTA_SLOT_BYTES", "BadImage", "BoardApi", "BoardService", "ImageInfo", "check_configured",
           "inspect_image", "merge_settings"]
