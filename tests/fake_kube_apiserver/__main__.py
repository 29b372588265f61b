"""``python -m tests.fake_kube_apiserver --kubeconfig PATH``: serve until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import signal
import tempfile
from pathlib import Path

from .server import StandInApiServer


async def _serve(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="stand-in-apiserver-") as workdir:
        labels = dict(item.split("=", 1) for item in args.node_label)
        server = StandInApiServer(
            Path(workdir),
            port=args.port,
            node_labels=labels,
            history=args.history,
            agent_only_pods=args.agent_only_pods,
        )
        await server.start()
        server.write_kubeconfig(Path(args.kubeconfig))
        print(f"stand-in Kubernetes API server at {server.url}; kubeconfig {args.kubeconfig}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="stand-in Kubernetes API server (tests only)")
    parser.add_argument("--kubeconfig", required=True, help="where to write the kubeconfig")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--node-label", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--history", type=int, default=1000, help="watch events kept")
    parser.add_argument(
        "--agent-only-pods",
        action="store_true",
        help="scheduler pods run no process: the kubelet speaks their agent protocol "
        "(bench/scale.py's many clusters)",
    )
    asyncio.run(_serve(parser.parse_args()))


if __name__ == "__main__":
    main()
