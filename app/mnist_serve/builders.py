"""Application builders: what a serve config's `import_path` names.

    import_path: mnist_serve.builders:build_app
    args: {model: {uri: ..., version: ...}}

Serve validates `args` against `AppArgs` at deploy time.
"""

from ray.serve import Application

from mnist_serve.api import Ingress
from mnist_serve.config import AppArgs
from mnist_serve.deployments import Classifier, Preprocessor


def build_app(args: AppArgs) -> Application:
    """Ingress → Preprocessor → Classifier."""
    return Ingress.bind(Preprocessor.bind(), Classifier.bind(args.model), args.limits)
