"""The committed OIP gRPC code is what `make proto` generates from the committed .proto."""

import subprocess
import sys
from pathlib import Path

from clusterkit.localray import REPO

GRPC = REPO / "app/mnist_serve/protocol/grpc"
GENERATED = ("grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2.pyi", "grpc_predict_v2_pb2_grpc.py")


def test_generated_code_matches_the_proto(tmp_path: Path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{REPO / 'app'}",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            str(GRPC / "grpc_predict_v2.proto"),
        ],
        check=True,
    )
    for name in GENERATED:
        fresh = (tmp_path / "mnist_serve/protocol/grpc" / name).read_text()
        assert (GRPC / name).read_text() == fresh, f"{name} is stale: run `make proto`"
