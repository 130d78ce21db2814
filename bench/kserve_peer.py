"""The KServe peer of `make bench-oip`: this project's weights and preprocessing served by KServe's
own Python ModelServer (the `kserve` package), from its own virtualenv (`make kserve-peer`):

    .venv-kserve/bin/python bench/kserve_peer.py --model_config config.json \\
        --http_port 28280 --grpc_port 28281 --workers 2

KServe parses the Open Inference Protocol (REST with or without binary tensors, gRPC), calls
`MnistModel.predict` and encodes the answer; nothing here changes that path. Every other flag is
KServe's (`kserve.model_server.parser`).

perf_analyzer reads Triton's model configuration before it sends anything, which stock KServe does
not serve: this module adds that one REST route and one gRPC method beside KServe's. They
answer `--model_config`, a Triton model configuration as JSON: what this service answers at
/v2/models/mnist/config, less its dynamic batching, which KServe does not do (bench/oip_bench.py
writes it).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import grpc
import numpy as np
import torch
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from grpc_tools import protoc
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer, model_server
from kserve.errors import ModelNotFound
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.utils.utils import generate_uuid

# The project's own modules, installed into .venv-kserve without their dependencies: these import
# only torch, torchvision and numpy (no Ray).
from mnist_serve import signature
from mnist_serve.preprocessing import to_model_input
from mnist_serve.signature import INPUT, MODEL_NAME, OUTPUTS, SIDE
from mnist_serve.weights import load_model

REPO = Path(__file__).resolve().parents[1]
# Triton's gRPC service, whose ModelConfig method KServe's servicer lacks.
SERVICE = "inference.GRPCInferenceService"

# Parsed at import, not under __main__: with --workers > 1 KServe spawns its REST workers
# (kserve/protocol/rest/multiprocess/server.py), which re-import this module, not as __main__.
parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], parents=[model_server.parser])
parser.add_argument("--model_config", type=Path, required=True, help="Triton model configuration (JSON)")
parser.add_argument("--weights", default=str(REPO / "artifacts/model/mnist_cnn.pt"))
parser.add_argument(
    "--torch_threads",
    type=int,
    # KServe leaves torch's default, a thread per core, in every process. Here each process gets
    # its share of the cores (so 1 with 2 workers, the gRPC server's process too), as this
    # service's replicas and bench/plain_fastapi.py do.
    default=max(1, (os.cpu_count() or 1) // model_server.args.workers),
)
args, _ = parser.parse_known_args()
torch.set_num_threads(args.torch_threads)
MODEL_CONFIG = json.loads(args.model_config.read_text())


class MnistModel(Model):
    """The model, as a KServe Model: OIP tensors in, OIP tensors out (kserve.protocol.infer_type)."""

    def __init__(self, weights: str) -> None:
        super().__init__(MODEL_NAME)
        self.weights = weights
        self.model = None

    def load(self) -> bool:
        self.model = load_model(self.weights)
        self.ready = True
        return self.ready

    # KServe's /v2/models/{name} metadata, as this service declares its tensors.
    def get_input_types(self) -> list[dict]:
        return [INPUT.as_metadata()]

    def get_output_types(self) -> list[dict]:
        return [t.as_metadata() for t in OUTPUTS]

    def predict(self, payload: InferRequest, headers: dict | None = None) -> InferResponse:
        # FP32 in [0, 1] or UINT8, [N, 1, 28, 28] or [N, 784]: to_model_input takes [N, 28, 28].
        # np.array: a writable copy of KServe's read-only view of gRPC's bytes, which torch warns about.
        pixels = np.array(payload.get_input_by_name(INPUT.name).as_numpy()).reshape(-1, SIDE, SIDE)
        with torch.inference_mode():
            log_probs = self.model(to_model_input(pixels)).numpy()
        values = {"label": log_probs.argmax(1), "probabilities": np.exp(log_probs), "logits": log_probs}
        # As KServe's own get_predict_response (kserve/utils/utils.py): binary or JSON as the
        # request asks, and only the outputs it names.
        outputs = []
        for tensor in OUTPUTS:
            output = InferOutput(tensor.name, list(values[tensor.name].shape), tensor.datatype)
            output.set_data_from_numpy(values[tensor.name], binary_data=payload.use_binary_outputs)
            outputs.append(output)
        return InferResponse(
            payload.id or generate_uuid(),
            self.name,
            outputs,
            use_binary_outputs=payload.use_binary_outputs,
            requested_outputs=payload.request_outputs,
        )


def model_config(model_name: str) -> dict:
    if model_name != MODEL_NAME:
        raise ModelNotFound(model_name)  # KServe's handlers answer 404 / NOT_FOUND
    return MODEL_CONFIG


def model_config_messages() -> tuple[type, type, type]:
    """ModelConfigRequest, ModelConfigResponse and ModelConfig, from this project's .proto (Triton's
    messages) compiled into a pool of their own: its other messages share their names with
    KServe's (package `inference`), which the default pool would refuse."""
    proto = Path(signature.__file__).parent / "protocol/grpc/grpc_predict_v2.proto"
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "descriptors.pb"
        argv = ["protoc", f"-I{proto.parent}", f"--descriptor_set_out={out}", proto.name]
        if protoc.main(argv) != 0:
            raise RuntimeError(f"protoc could not compile {proto}")
        files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    names = ("ModelConfigRequest", "ModelConfigResponse", "ModelConfig")
    return tuple(message_factory.GetMessageClass(pool.FindMessageTypeByName(f"inference.{n}")) for n in names)


def add_model_config_rpc() -> None:
    """Triton's ModelConfig method beside KServe's gRPC servicer. GRPCServer.start
    (kserve/protocol/grpc/server.py) builds its aio server and registers KServe's servicer through
    grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server, which is wrapped here to
    register this method after it, behind the same interceptors."""
    request_type, response_type, config_type = model_config_messages()

    async def model_config_rpc(request, context):
        return response_type(config=json_format.ParseDict(model_config(request.name), config_type()))

    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "ModelConfig": grpc.unary_unary_rpc_method_handler(
                model_config_rpc,
                request_deserializer=request_type.FromString,
                response_serializer=response_type.SerializeToString,
            )
        },
    )
    add_servicer = grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server

    def add_servicer_and_model_config(servicer, server) -> None:
        add_servicer(servicer, server)
        server.add_generic_rpc_handlers((handler,))

    grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server = add_servicer_and_model_config


# Triton's model configuration over REST: a route on KServe's FastAPI app (kserve/model_server.py,
# module-level `app`), to which RESTServer.create_application (kserve/protocol/rest/server.py)
# adds KServe's own routes and exception handlers. Here, not in main(): every REST worker needs it.
model_server.app.add_api_route("/v2/models/{model_name}/config", model_config, methods=["GET"])

if __name__ == "__main__":
    add_model_config_rpc()  # KServe's gRPC server runs in this process only (ModelServer.start)
    model = MnistModel(args.weights)
    model.load()
    ModelServer().start([model])
