"""A stand-in Kubernetes API server for tests (no real Kubernetes runs on these machines).

:class:`StandInApiServer` speaks the real REST API for pods, services and secrets and
runs each pod as a local process; see :mod:`.server` and :mod:`.kubelet` for what it
does and what it leaves out. Run it by hand with
``python -m tests.fake_kube_apiserver --kubeconfig /tmp/kubeconfig``.
"""

from .server import StandInApiServer

__all__ = ["StandInApiServer"]
