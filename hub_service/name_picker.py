"""Default display names for clusters: a random adjective-noun pair ("brisk-otter"),
unique among the names its owner uses now. The longest pair leaves room for a number
within the rule's 30 characters (hubgate/cluster_names.py). Only the owner's own names
are looked at: nothing about other users shows through a name."""

from __future__ import annotations

import secrets
from collections.abc import Collection

ADJECTIVES = (
    "amber autumn bold brave breezy bright brisk calm clever cosmic crisp curious daring "
    "eager early fair fancy fleet frosty gentle glad golden grand happy hazy humble jolly "
    "keen kind lively lucky merry mellow misty nimble noble patient plucky polar proud "
    "quick quiet rapid rosy rustic shiny silent silver sleek snowy spry steady sunny "
    "swift tidy tranquil vivid warm wise witty zesty"
).split()
NOUNS = (
    "acorn badger beacon birch bison brook cedar comet condor coral crane dingo dolphin "
    "falcon fern finch fjord gecko glacier heron ibis jaguar kestrel koala lagoon lark "
    "lemur lynx maple marmot meadow mole moose newt orca otter owl panda pebble pelican "
    "pine puffin quail raven reef robin salmon sparrow spruce stork tapir thistle tiger "
    "toucan walrus willow wombat yak"
).split()


def pick_display_name(taken: Collection[str]) -> str:
    """A name not in ``taken``: a random pair, or (when many pairs are taken) a pair
    with a number, which always ends the search."""
    for _attempt in range(20):
        name = f"{secrets.choice(ADJECTIVES)}-{secrets.choice(NOUNS)}"
        if name not in taken:
            return name
    base = f"{secrets.choice(ADJECTIVES)}-{secrets.choice(NOUNS)}"
    number = 2
    while f"{base}-{number}" in taken:
        number += 1
    return f"{base}-{number}"
