"""The wire protocols, one module each, over one classify path (`dataplane`).

tutorial.py   POST /          the public Ray Serve tutorial's contract
predict.py    POST /predict   JSON, raw uint8 bytes or PNG
oip.py        the Open Inference Protocol's tensors and metadata, shared by:
oip_rest.py   /v2/...         OIP REST, with Triton's binary tensor data extension
oip_grpc.py   inference.GRPCInferenceService through Ray Serve's gRPC ingress
"""
