"""Recording: event clips and continuous/motion segments as H.264 MP4 (PyAV), indexed in the events database."""

from .buffer import PreCaptureBuffer
from .encoder import ClipWriter, EncodeSettings, JpegDecoder, Probe, probe, remux
from .export import export_span
from .exporter import ClipFile
from .index import RecordingIndex, recording_path
from .recorder import Recorder
from .recovery import RecoveryReport, recover

__all__ = ["ClipFile", "ClipWriter", "EncodeSettings", "JpegDecoder", "PreCaptureBuffer", "Probe", "Recorder",
           "RecordingIndex", "RecoveryReport", "export_span", "probe", "recording_path", "recover", "remux"]
