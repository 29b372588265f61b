"""A cluster's scaling controls: a number of workers (manual) or a range (adaptive)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ipywidgets as ipw

from .base import guarded


class ScalingControls(ipw.Accordion):
    """*Manual scaling* and *Adaptive scaling*, each with its button, acting on
    ``cluster`` (its ``scale(n)`` and ``adapt(minimum=, maximum=)``). A button's error
    goes to ``show_message``; after a request, ``after_action`` refreshes the status."""

    def __init__(
        self,
        cluster: Any,
        *,
        show_message: Callable[[str], None],
        after_action: Callable[[], None],
    ) -> None:
        self.cluster = cluster
        self._after_action = after_action
        self.workers = ipw.IntText(value=0, description="Workers", layout=ipw.Layout(width="180px"))
        self.scale_button = ipw.Button(description="Scale", button_style="primary")
        self.minimum = ipw.IntText(value=0, description="Minimum", layout=ipw.Layout(width="180px"))
        self.maximum = ipw.IntText(value=4, description="Maximum", layout=ipw.Layout(width="180px"))
        self.adapt_button = ipw.Button(description="Adapt", button_style="primary")
        self.scale_button.on_click(guarded("Scale", show_message)(lambda _: self.scale()))
        self.adapt_button.on_click(guarded("Adapt", show_message)(lambda _: self.adapt()))
        super().__init__(
            children=[
                ipw.HBox([self.workers, self.scale_button]),
                ipw.HBox([self.minimum, self.maximum, self.adapt_button]),
            ],
            titles=("Manual scaling", "Adaptive scaling"),
        )

    def set_disabled(self, disabled: bool) -> None:
        self.scale_button.disabled = disabled
        self.adapt_button.disabled = disabled

    def scale(self) -> None:
        count = self.workers.value
        if count < 0:
            raise ValueError("the number of workers must be 0 or more")
        self.cluster.scale(count)
        self._after_action()

    def adapt(self) -> None:
        minimum, maximum = self.minimum.value, self.maximum.value
        if minimum < 0 or maximum < minimum:
            raise ValueError("enter 0 <= minimum <= maximum")
        self.cluster.adapt(minimum=minimum, maximum=maximum)
        self._after_action()
