"""The user code of the foundation issue, as the seeds write it, parametrised by client."""

USER_SNIPPET = """
import time
from {client} import Gateway, GatewayCluster

gateway = Gateway()
options = gateway.cluster_options()
options.worker_cores = 2
t0 = time.time()
def step(what):
    print(f"STEP {{what}} {{time.time() - t0:.2f}}", flush=True)
cluster = gateway.new_cluster(options)
step("created")
try:
    cluster.scale(4)
    client = cluster.get_client()
    client.wait_for_workers(4, timeout=120)
    step("4 workers")
    import dask.array as da
    assert da.ones((4000, 4000), chunks=500).sum().compute() == 16_000_000
    print("DASHBOARD", cluster.dashboard_link)
    cluster.adapt(minimum=1, maximum=4)
    names = [c.name for c in gateway.list_clusters()]
    assert cluster.name in names, names
    same = gateway.connect(cluster.name)
    assert same.name == cluster.name
    client.close()
    step("computed, adapted, listed, connected")
finally:
    gateway.stop_cluster(cluster.name)
step("stopped")

small = gateway.new_cluster(worker_cores=1, worker_memory=2)
small.shutdown()
step("small")

with gateway.new_cluster(shutdown_on_close=False) as keep:
    kept = keep.name
assert kept in [c.name for c in gateway.list_clusters()], "shutdown_on_close=False cluster vanished"
gateway.stop_cluster(kept)
step("kept")

GatewayCluster(worker_cores=1).shutdown()
step("GatewayCluster")

mine = {{cluster.name, small.name, kept}}
deadline = time.time() + 60
while mine & {{c.name for c in gateway.list_clusters()}} and time.time() < deadline:
    time.sleep(0.5)
assert not mine & {{c.name for c in gateway.list_clusters()}}, gateway.list_clusters()
print("SNIPPET OK")
"""


def attempt(client: str, call: str) -> str:
    """User code that calls ``gateway.<call>`` with ``client`` (``hubgate`` or
    ``dask_gateway``) configured by the environment, and prints ``ERROR <exception type>
    <message on one line>`` or ``NO ERROR``."""
    return f"""
from {client} import Gateway
with Gateway() as gateway:
    try:
        gateway.{call}
    except Exception as exc:
        print("ERROR", type(exc).__name__, str(exc).replace(chr(10), " | "))
    else:
        print("NO ERROR")
"""
