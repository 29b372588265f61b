"""Cluster options: one definition for the service, the client and the widgets.

Operators declare fields (:class:`Integer`, :class:`Float`, :class:`String`,
:class:`Bool`, :class:`Select`, :class:`Mapping`) in an :class:`OptionSet`; the service
publishes ``OptionSet.spec()`` (dask-gateway's v1 format, which the official client
reads) and ``rich_spec()`` (plus help texts), and parses requests with
``OptionSet.parse``. The client rebuilds the same field objects from the spec
(:meth:`Options._from_spec`), so a value is checked by the same code, with the same
message, in the notebook and in the service.

Every field also describes itself as JSON Schema (``Field.json_schema()``, with its
message templates under ``x-hubgate-messages``) and form hints (``Field.ui_schema()``):
``OptionSet.form_schema()`` is what the lab extension and the widgets build their forms
from, so a new field type is a ``Field`` subclass in ``field_types.py`` (exported here)
and nothing else. The official dask-gateway client knows six type names only:
``Field.official_type`` says which of them a field travels as on ``/api/v1/options``
(None: not sent there; the service applies its default).

The modules: ``fields.py`` (``Field``, the base of every type), ``field_types.py`` (the
types), ``option_set.py`` (the service's ``OptionSet`` and its errors), ``values.py``
(the client's ``Options``), ``standard.py`` (ready-made fields and ``standard_handler``).
This package imports neither ``distributed`` nor the client: the service uses it.
"""

from __future__ import annotations

from .field_types import Bool, Float, Integer, Mapping, Select, String
from .fields import FORM_INPUTS, KIND_WORDS, OFFICIAL_TYPES, Field, template_literal
from .option_set import Handler, OptionsError, OptionSet, OptionSetError, resolve_option_set
from .standard import (
    GiB,
    environment_variables_field,
    idle_timeout_field,
    image_field,
    profile_field,
    resources_per_worker_field,
    standard_handler,
    standard_handler_keys,
    worker_cores_field,
    worker_memory_field,
    worker_setup_field,
)
from .values import Options

__all__ = [
    "FORM_INPUTS",
    "KIND_WORDS",
    "OFFICIAL_TYPES",
    "Bool",
    "Field",
    "Float",
    "GiB",
    "Handler",
    "Integer",
    "Mapping",
    "OptionSet",
    "OptionSetError",
    "Options",
    "OptionsError",
    "Select",
    "String",
    "environment_variables_field",
    "idle_timeout_field",
    "image_field",
    "profile_field",
    "resolve_option_set",
    "resources_per_worker_field",
    "standard_handler",
    "standard_handler_keys",
    "template_literal",
    "worker_cores_field",
    "worker_memory_field",
    "worker_setup_field",
]
