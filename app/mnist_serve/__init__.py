"""mnist-serve: an MNIST CNN served with Ray Serve, built to run on KubeRay."""

from importlib.metadata import version

__version__ = version("mnist-serve")
