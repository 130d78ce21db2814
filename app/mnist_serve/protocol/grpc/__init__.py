"""The Open Inference Protocol's gRPC API: `grpc_predict_v2.proto` and its generated code
(`make proto` regenerates it with the pinned grpcio-tools; a unit test fails when it drifts)."""
