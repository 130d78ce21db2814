"""Application builders: what a serve config's `import_path` names.

    import_path: mnist_serve.builders:build_app
    args: {model: {uri: ..., version: ...}}

Serve validates `args` against `AppArgs` at deploy time, and the builder loads the model once:
a missing object, a checksum mismatch or missing credentials fail the deploy here, before Serve
replaces any running replica, so the previous version keeps serving.
"""

from ray.serve import Application

from mnist_serve.api import Ingress
from mnist_serve.config import AppArgs
from mnist_serve.deployments import Classifier, Composed, Fused, Preprocessor
from mnist_serve.weights import load_model


def build_app(args: AppArgs) -> Application:
    """`composed`: Ingress → Preprocessor → Classifier; `fused`: the model inside the Ingress."""
    load_model(args.model.uri, args.model.sha256)
    if args.topology == "fused":
        return Ingress.bind(Fused(args.model), args.limits)
    return Ingress.bind(Composed(Preprocessor.bind(), Classifier.bind(args.model)), args.limits)
