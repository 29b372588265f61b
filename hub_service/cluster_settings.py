"""The cluster settings an operator configures, checked once when the service starts.

``HubgateService.cluster_config`` (every cluster's defaults) is parsed into a
:class:`ClusterConfig` against hubgate's own keys and the keys the backend declares
(``Backend.accepted_resources``); an option set given as an object, whose handler's keys
are known without running it (``standard_handler`` or none), has those keys checked too.
A mistake in either raises ``TraitError``, which stops ``hubgate service`` at start with
a message naming the setting.

What can only be known per request (an operator's own handler, a per-user option set)
is checked per request against the same keys. A bad key there is the hub's mistake, not
the user's: the user gets a 409 that says the hub is misconfigured, with nothing of its
configuration, and the operator a log line with the key and the valid ones.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from traitlets import TraitError

from ..config_keys import unknown_keys_message
from ..options import OptionSet, OptionSetError, resolve_option_set
from ..spawners.base import Backend
from .cluster_config import CONFIG_KEYS, ClusterConfig, ConfigError, UnknownConfigKey
from .errors import HubMisconfigured
from .model import User

log = logging.getLogger("hubgate")

MISCONFIGURED = (
    "This hub's cluster options are misconfigured, so no cluster can be created with "
    "them. Please tell the hub's administrators: the service's log says what to fix."
)


@dataclass(frozen=True)
class ClusterSettings:
    """cluster_config parsed once, and the keys a cluster's configuration may have."""

    defaults: ClusterConfig
    accepted_resources: frozenset[str]
    backend_name: str

    @classmethod
    def from_config(
        cls, cluster_config: Any, cluster_options: Any, backend_class: type[Backend]
    ) -> ClusterSettings:
        """Check the settings against ``backend_class``; ``TraitError`` naming the
        setting when they do not fit."""
        accepted = frozenset(backend_class.accepted_resources)
        backend_name = backend_class.backend_name or backend_class.__name__
        try:
            defaults = ClusterConfig.from_handler_output(
                cluster_config,
                accepted_resources=accepted,
                where=f"HubgateService.cluster_config (with the {backend_name} backend)",
            )
        except ConfigError as exc:
            text = str(exc)
            if not text.startswith("HubgateService.cluster_config"):
                text = f"HubgateService.cluster_config: {text}"
            raise TraitError(text) from None
        settings = cls(defaults, accepted, backend_name)
        if isinstance(cluster_options, OptionSet):
            settings.check_option_set(cluster_options)
        return settings

    @property
    def valid_keys(self) -> list[str]:
        return [*CONFIG_KEYS, "resources", *sorted(self.accepted_resources)]

    def check_option_set(self, option_set: OptionSet) -> None:
        """The keys an option set's handler can return, when known without running it."""
        keys = option_set.result_keys()
        if keys is None:
            return
        unknown = sorted(k for k in keys if k not in self.valid_keys)
        if unknown:
            raise TraitError(
                unknown_keys_message(
                    f"HubgateService.cluster_options: its handler would give clusters "
                    f"settings the {self.backend_name} backend does not take",
                    unknown,
                    self.valid_keys,
                )
            )

    def config_for(self, handler_output: Any, user: User) -> ClusterConfig:
        """A new cluster's configuration: the handler's output over the defaults.
        ``ConfigError`` for values the user can change; ``HubMisconfigured`` for a key
        the operator's handler should never have returned."""
        try:
            return ClusterConfig.from_handler_output(
                handler_output,
                self.defaults,
                accepted_resources=self.accepted_resources,
                where=f"The result of the cluster options handler (for {user.name})",
            )
        except UnknownConfigKey as exc:
            log.error(
                "HubgateService.cluster_options is misconfigured: %s. The request was "
                "refused with a 409; fix the options handler or its profiles",
                exc,
            )
            raise HubMisconfigured(MISCONFIGURED) from None


async def option_set_for(cluster_options: Any, user: User) -> OptionSet:
    """The user's option set; ``HubMisconfigured`` (and the reason in the log) when the
    operator's cluster_options callable returns something else."""
    try:
        return await resolve_option_set(cluster_options, user)
    except OptionSetError as exc:
        log.error("HubgateService.cluster_options is misconfigured (for %s): %s", user.name, exc)
        raise HubMisconfigured(MISCONFIGURED) from None


async def parse_options(option_set: OptionSet, requested: Any, user: User) -> tuple[dict, dict]:
    """``option_set.parse``, with a handler that returns no dict reported as the hub's
    mistake (``OptionsError`` for the user's own stays as it is)."""
    try:
        return await option_set.parse(requested, user)
    except OptionSetError as exc:
        log.error("HubgateService.cluster_options is misconfigured (for %s): %s", user.name, exc)
        raise HubMisconfigured(MISCONFIGURED) from None
