"""Tools around the service: the ``hubgate`` command line (``cli``), ``hubgate demo``
(``demo``) and the real JupyterHub that the demo and the tests start (``hubrunner``)."""
