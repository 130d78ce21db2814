"""mnist-serve: an MNIST CNN served with Ray Serve, built to run on KubeRay."""
