"""A Triton gRPC server that answers as told, hostile answers included: for tests of camserver's triton client.

It speaks the real protocol (tritonclient's own protobuf service) on 127.0.0.1 from its own threads
(grpc's synchronous server), so the camserver under test meets it through a real socket and its
event loop never runs the fake's work. `mode` picks the answer of every inference, probes included:

- ok: one box per frame (a person at 10,20-110,220, clipped to the frame the JPEG's header declares)
- nan, inf, huge: the same box with a NaN, a -inf or a 1e30 coordinate
- rows: 300,000 rows per frame (a 7.2 MB answer per frame; the contract says at most 300)
- count: one result more than the frames sent
- missing: no `detections` output
"""

from __future__ import annotations

import threading
from concurrent import futures
from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as rpc
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

from camserver.detect.backends import triton_contract as contract
from camserver.ingest.jpeg import BadFrame, inspect_jpeg

MODES = ("ok", "nan", "inf", "huge", "rows", "count", "missing")
NAMES = ["person", "car"]
BOX = (10.0, 20.0, 110.0, 220.0)


def _size(jpeg: bytes) -> tuple[int, int]:
    try:
        info = inspect_jpeg(jpeg, 16384, 16384)
    except BadFrame:
        return 0, 0
    return info.width, info.height


class FakeTriton(rpc.GRPCInferenceServiceServicer):
    """One model, `detector`, answering per `mode`; `start()` returns the port."""

    def __init__(self, model: str = contract.DEFAULT_MODEL_NAME) -> None:
        self.model = model
        self.mode = "ok"
        self.infers = 0  # inference requests answered, probes included
        self.by_mode: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None
        self._rows = np.zeros((300_000, 6), np.float32)  # built once: the answer's size, not its making, is the test

    def start(self) -> int:
        """Listen on 127.0.0.1:0; the port."""
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                                   options=[("grpc.max_send_message_length", 1 << 30)])
        rpc.add_GRPCInferenceServiceServicer_to_server(self, self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        return port

    def stop(self) -> None:
        """Stop at once."""
        if self._server is not None:
            self._server.stop(0).wait(5)

    # -- the calls camserver's client makes ------------------------------------------------------------

    def ServerLive(self, request: Any, context: Any) -> Any:
        return pb.ServerLiveResponse(live=True)

    def ServerReady(self, request: Any, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=True)

    def ModelReady(self, request: Any, context: Any) -> Any:
        return pb.ModelReadyResponse(ready=request.name == self.model)

    def ModelConfig(self, request: Any, context: Any) -> Any:
        config = mc.ModelConfig(name=self.model, max_batch_size=8, backend="python")
        for name, dtype, dims in ((contract.DETECTIONS, mc.TYPE_FP32, [-1, 6]), (contract.COUNT, mc.TYPE_INT32, [1]),
                                  (contract.SIZE, mc.TYPE_INT32, [2]), (contract.ERROR, mc.TYPE_STRING, [1])):
            config.output.append(mc.ModelOutput(name=name, data_type=dtype, dims=dims))
        config.parameters[contract.CLASS_NAMES_PARAMETER].string_value = contract.class_names_parameter(NAMES)
        return pb.ModelConfigResponse(config=config)

    def ModelStatistics(self, request: Any, context: Any) -> Any:
        with self._lock:
            n = self.infers
        return pb.ModelStatisticsResponse(model_stats=[pb.ModelStatistics(
            name=self.model, version="1", inference_count=n, execution_count=n)])

    def ModelInfer(self, request: Any, context: Any) -> Any:
        mode = self.mode
        with self._lock:
            self.infers += 1
            self.by_mode[mode] = self.by_mode.get(mode, 0) + 1
        jpegs = [bytes(j) for j in deserialize_bytes_tensor(request.raw_input_contents[0]).reshape(-1)]
        frames = len(jpegs)
        sizes = np.array([_size(j) for j in jpegs], np.int32).reshape(frames, 2)
        dets = np.zeros((frames, 1, 6), np.float32)
        for i, (w, h) in enumerate(sizes.tolist()):
            dets[i, 0] = (min(BOX[0], w), min(BOX[1], h), min(BOX[2], w), min(BOX[3], h), 0.9, 0)
        count = np.ones((frames, 1), np.int32)
        if mode == "nan":
            dets[:, 0, 0] = np.nan
        elif mode == "inf":
            dets[:, 0, 1] = -np.inf
        elif mode == "huge":
            dets[:, 0, 2] = 1e30
        elif mode == "rows":
            dets = np.broadcast_to(self._rows, (frames, *self._rows.shape))
            count[:] = self._rows.shape[0]
        elif mode == "count":
            dets, count, sizes = (np.concatenate([a, a[:1]]) for a in (dets, count, sizes))
        outputs = [(contract.DETECTIONS, "FP32", dets), (contract.COUNT, "INT32", count), (contract.SIZE, "INT32", sizes),
                   (contract.ERROR, "BYTES", np.array([[b""]] * len(count), dtype=np.object_))]
        if mode == "missing":
            outputs = outputs[1:]
        response = pb.ModelInferResponse(model_name=self.model, model_version="1", id=request.id)
        for name, datatype, array in outputs:
            response.outputs.append(pb.ModelInferResponse.InferOutputTensor(name=name, datatype=datatype,
                                                                             shape=list(array.shape)))
            raw = serialize_byte_tensor(array).item() if datatype == "BYTES" else np.ascontiguousarray(array).tobytes()
            response.raw_output_contents.append(raw)
        return response
