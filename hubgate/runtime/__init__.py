"""What runs inside a cluster: the scheduler and worker process (``cluster_process``),
the scheduler's agent that reports to the service (``scheduler_agent``) and the
scheduler dashboard's guard (``dashboard_guard``, also read by the service).

Started as ``python -m hubgate.runtime.cluster_process scheduler|worker``.
"""
