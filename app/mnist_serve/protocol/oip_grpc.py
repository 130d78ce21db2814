"""The Open Inference Protocol over gRPC: `inference.GRPCInferenceService`.

Served by the ingress deployment through Ray Serve's gRPC ingress: the serve
config's `grpc_options.grpc_servicer_functions` names the generated
`add_GRPCInferenceServiceServicer_to_server`, and Serve routes each RPC to the
deployment method of the same name (ray/serve/_private/grpc_util.py
`gRPCGenericServer`), passing the request message and, when asked for, a
`grpc_context` to set the status on. With one application no `application`
metadata is needed, so stock OIP clients work unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from mnist_serve import decoding, metrics
from mnist_serve.decoding import InputError
from mnist_serve.protocol import oip
from mnist_serve.protocol.dataplane import DataPlane
from mnist_serve.protocol.grpc import grpc_predict_v2_pb2 as pb

# OIP REST statuses → gRPC codes, as Triton maps them.
_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    503: grpc.StatusCode.UNAVAILABLE,
}
_CONTENTS = {"FP32": "fp32_contents", "UINT8": "uint_contents"}


async def _answer(grpc_context, name: str, reply: Awaitable[Message], empty: Message) -> Message:
    """The reply of RPC `name`, or `empty` with the gRPC status an `InputError` maps to."""
    try:
        with metrics.rpc(name):
            return await reply
    except InputError as exc:
        grpc_context.set_code(_CODES.get(exc.status, grpc.StatusCode.INVALID_ARGUMENT))
        grpc_context.set_details(str(exc))
        return empty


class GRPCInferenceService:
    """The RPCs, as methods of the ingress deployment (which sets `self.dataplane`)."""

    dataplane: DataPlane

    async def ServerLive(self, request: pb.ServerLiveRequest) -> pb.ServerLiveResponse:  # noqa: N802
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest) -> pb.ServerReadyResponse:  # noqa: N802
        return pb.ServerReadyResponse(ready=await self.dataplane.ready())

    async def ServerMetadata(self, request: pb.ServerMetadataRequest) -> pb.ServerMetadataResponse:  # noqa: N802
        return pb.ServerMetadataResponse(**oip.server_metadata())

    async def ModelReady(self, request: pb.ModelReadyRequest) -> pb.ModelReadyResponse:  # noqa: N802
        """Not ready (rather than an error) for a model or version not served, as Triton answers."""
        if request.name != oip.MODEL_NAME or not await self.dataplane.ready():
            return pb.ModelReadyResponse(ready=False)
        served = await self.dataplane.model_version()
        return pb.ModelReadyResponse(ready=request.version in ("", served))

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, grpc_context) -> pb.ModelMetadataResponse:  # noqa: N802
        async def reply() -> pb.ModelMetadataResponse:
            oip.check_model(request.name)
            served = await self.dataplane.model_version()
            oip.check_version(request.version, served)
            return pb.ModelMetadataResponse(**oip.model_metadata(served))

        return await _answer(grpc_context, "ModelMetadata", reply(), pb.ModelMetadataResponse())

    async def ModelConfig(self, request: pb.ModelConfigRequest, grpc_context) -> pb.ModelConfigResponse:  # noqa: N802
        async def reply() -> pb.ModelConfigResponse:
            oip.check_model(request.name)
            oip.check_version(request.version, await self.dataplane.model_version())
            config = oip.model_config(self.dataplane.limits, self.dataplane.batching)
            return pb.ModelConfigResponse(config=json_format.ParseDict(config, pb.ModelConfig()))

        return await _answer(grpc_context, "ModelConfig", reply(), pb.ModelConfigResponse())

    async def ModelInfer(self, request: pb.ModelInferRequest, grpc_context) -> pb.ModelInferResponse:  # noqa: N802
        return await _answer(grpc_context, "ModelInfer", self._infer(request), pb.ModelInferResponse())

    async def _infer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        oip.check_model(request.model_name)
        if request.model_version:
            oip.check_version(request.model_version, await self.dataplane.model_version())
        if len(request.inputs) != 1:
            raise InputError(f"the model takes exactly one input; got {len(request.inputs)}", 400)
        tensor = request.inputs[0]
        limits = self.dataplane.limits
        if request.raw_input_contents:
            if len(request.raw_input_contents) != 1:
                raise InputError("raw_input_contents must hold one entry per input", 400)
            raw = request.raw_input_contents[0]
            pixels = decoding.oip_tensor(tensor.name, tensor.datatype, list(tensor.shape), limits, raw=raw)
        else:
            field = _CONTENTS.get(tensor.datatype, "")
            data = list(getattr(tensor.contents, field)) if field else []
            pixels = decoding.oip_tensor(tensor.name, tensor.datatype, list(tensor.shape), limits, data=data)
        wanted = oip.requested_outputs([o.name for o in request.outputs])
        prediction = await self.dataplane.classify(pixels)
        reply = pb.ModelInferResponse(
            model_name=request.model_name, model_version=prediction.model_version, id=request.id
        )
        for key, value in request.parameters.items():
            if key not in oip.ENCODING_PARAMETERS:
                reply.parameters[key].CopyFrom(value)
        # Raw contents, as Triton answers: compact and what its client expects.
        for name, datatype, array in oip.output_tensors(prediction, wanted):
            reply.outputs.add(name=name, datatype=datatype, shape=array.shape)
            reply.raw_output_contents.append(array.tobytes())
        return reply
