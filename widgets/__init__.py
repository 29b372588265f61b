"""ipywidgets for hubgate: the options form, a cluster's controls, the user's clusters.

One plain class per widget (``cluster_view.ClusterWidget``, ``gateway_view.GatewayWidget``,
``options_form.OptionsForm``), in modules that import ipywidgets; the ``*_widget``
functions (``factories``) import them when called and return None without ipywidgets,
so this package imports without it and callers show ``*_html`` / ``*_text`` instead.
"""

from .factories import cluster_widget, gateway_widget, options_widget
from .gateway_clusters import list_states
from .options_fallback import options_html, options_text
from .sources import read_state
from .state import ClusterState, cluster_html, cluster_text, gateway_html, gateway_text

__all__ = [
    "ClusterState",
    "cluster_html",
    "cluster_text",
    "cluster_widget",
    "gateway_html",
    "gateway_text",
    "gateway_widget",
    "list_states",
    "options_html",
    "options_text",
    "options_widget",
    "read_state",
]
