"""Regenerate ``grpc_predict_v2_pb2.py``, ``.pyi`` and ``_pb2_grpc.py`` from the .proto.

Run ``python -m flywheel.serving.proto`` after editing ``grpc_predict_v2.proto`` (needs
grpcio-tools, in the dev extra). The proto is compiled with ``src/`` as its root, so the
generated service module imports the messages as ``flywheel.serving.proto``.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main() -> int:
    try:
        from grpc_tools import protoc
    except ImportError:
        print("grpcio-tools is missing: pip install 'flywheel[dev]'", file=sys.stderr)
        return 2
    here = Path(__file__).resolve().parent
    root = here.parents[2]  # src/
    proto = here.relative_to(root) / "grpc_predict_v2.proto"
    include = Path(protoc.__file__).parent / "_proto"
    return int(protoc.main(["grpc_tools.protoc", f"-I{root}", f"-I{include}",
                            f"--python_out={root}", f"--pyi_out={root}",
                            f"--grpc_python_out={root}", str(proto)]))


if __name__ == "__main__":
    sys.exit(main())
