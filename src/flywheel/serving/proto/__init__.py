"""The Open Inference Protocol v2's gRPC messages and service (``grpc_predict_v2.proto``).

``grpc_predict_v2_pb2`` and ``grpc_predict_v2_pb2_grpc`` are generated from the .proto beside
them by grpcio-tools (``python -m flywheel.serving.proto`` regenerates them); they import
protobuf and grpcio, the ``grpc`` extra, so nothing imports them unless gRPC is served.

The messages are package ``inference``, as Triton's and KServe's are: protobuf's default pool
holds one set of them per process, so import these or ``tritonclient.grpc``'s, not both.
"""
