"""ipywidgets for hubgate: the options form, a cluster's controls, the user's clusters.

ipywidgets is imported only when a widget is made; without it the ``*_widget`` functions
return None and callers show ``*_html`` / ``*_text`` instead.
"""

from .cluster_view import cluster_widget
from .gateway_view import gateway_widget, list_states
from .options_form import options_html, options_text, options_widget
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
