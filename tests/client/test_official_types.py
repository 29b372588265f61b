"""The official dask-gateway client (2026.3.0) reads /api/v1/options whatever field types
the hub uses: each hubgate type travels as one of the six it knows, or not at all."""

from __future__ import annotations

import json
from typing import Any

import dask_gateway.options as official_client
import pytest

from hubgate.options import (
    OFFICIAL_TYPES,
    Bool,
    Field,
    Float,
    Integer,
    Mapping,
    Options,
    OptionSet,
    Select,
    String,
)
from tests.toy_fields import Duration, Seed

# One field of every type hubgate has, and values each accepts.
EXAMPLES: dict[str, tuple[Field, list[Any]]] = {
    "int": (Integer("worker_cores", 2, min=1, max=4), [1, 4]),
    "float": (Float("worker_memory", 2, min=0.5, max=8), [0.5, 3, 7.5]),
    "string": (String("image", "img"), ["other", ""]),
    "bool": (Bool("gpu"), [True, False]),
    "select": (Select("profile", options=[("small", {"n": 1}), ("large", {"n": 2})]), ["large"]),
    "mapping": (Mapping("environment", {"A": "1"}), [{}, {"B": "2", "C": 3}]),
    "toy-duration": (Duration("walltime", "2h"), ["90s", "30m"]),
    "toy-seed": (Seed("seed"), [0, 11]),
}


def official_options(option_set: OptionSet) -> official_client.Options:
    """What ``Gateway.cluster_options()`` builds from our /api/v1/options reply."""
    return official_client.Options._from_spec(json.loads(json.dumps(option_set.spec())))


def test_every_hubgate_type_has_an_example() -> None:
    ours = {name for name, cls in Field._registry.items() if cls.__module__.startswith("hubgate.")}
    assert ours == set(OFFICIAL_TYPES)
    assert ours <= set(EXAMPLES), "add an example of the new type to EXAMPLES"


@pytest.mark.parametrize("type_name", sorted(EXAMPLES))
def test_the_official_client_reads_sets_and_sends_every_type(type_name: str) -> None:
    field, accepted = EXAMPLES[type_name]
    option_set = OptionSet(field)
    theirs = official_options(option_set)
    if field.official_type is None:
        # Left out: the official client neither shows nor sends it; the service's
        # default applies to its clusters.
        assert dict(theirs) == {}
        assert option_set.validate(dict(theirs)) == {field.field: field.get_default()}
        return
    assert dict(theirs) == {field.field: field.get_default()}
    for value in accepted:
        theirs[field.field] = value
        # What new_cluster(options) sends is accepted by the service as it was set.
        sent = json.loads(json.dumps(dict(theirs)))
        assert option_set.validate(sent) == {field.field: field.validate(value)}


def test_a_new_type_travels_as_its_closest_official_type() -> None:
    walltime = Duration("walltime", "2h", label="Wall time")
    entry = OptionSet(walltime).spec()[0]
    assert entry == {
        "field": "walltime",
        "label": "Wall time",
        "default": "2h",
        "spec": {"type": "string"},
    }
    # The service still applies the type's own rules to what the official client sends.
    theirs = official_options(OptionSet(walltime))
    theirs.walltime = "soon"
    with pytest.raises(ValueError, match="walltime must be a number followed by s, m or h"):
        OptionSet(walltime).validate(dict(theirs))


def test_a_number_type_keeps_its_bounds_for_the_official_client() -> None:
    class Cores(Integer):
        type_name = "toy-cores"
        official_type = "int"

    try:
        [entry] = OptionSet(Cores("cores", 2, min=1, max=3)).spec()
        assert entry["spec"] == {"type": "int", "min": 1, "max": 3}
        theirs = official_options(OptionSet(Cores("cores", 2, min=1, max=3)))
        with pytest.raises(ValueError):
            theirs.cores = 4
    finally:
        del Field._registry["toy-cores"]


def test_hubgates_client_reads_a_type_it_does_not_know_as_its_official_type() -> None:
    entry = Duration("walltime").rich_spec()
    entry["spec"]["type"] = "from-a-newer-service"
    options = Options._from_spec([entry])
    assert options.walltime == "30m"
    options.walltime = "anything"  # checked as a string; the service checks the rest
    # A type with no official type is left out, as the official client goes without it.
    seed = Seed("seed").rich_spec()
    seed["spec"]["type"] = "from-a-newer-service"
    assert dict(Options._from_spec([entry, seed])) == {"walltime": "30m"}
    # A v1 entry (no official_type) of an unknown type is still an error that says so.
    del seed["official_type"]
    with pytest.raises(ValueError, match="does not understand"):
        Options._from_spec([seed])


def test_a_type_that_would_break_a_client_or_a_form_fails_when_defined() -> None:
    with pytest.raises(TypeError, match="official_type must be None or one of"):

        class Date(String):
            type_name = "toy-date"
            official_type = "date"

    with pytest.raises(TypeError, match="form_input must be one of"):

        class Colour(String):
            type_name = "toy-colour"
            form_input = "colour-picker"

    assert "toy-date" not in Field._registry and "toy-colour" not in Field._registry
