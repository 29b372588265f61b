"""A field type added in Python only (tests/toy_fields.py: ``Duration``, sent to the
official client as a string, and ``Seed``, which the official client never sees) shows in
every surface of a real hub: the lab extension's form, the notebook widget and the
official dask-gateway client's ``cluster_options()``, which creates a cluster with it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

import tests.toy_fields  # noqa: F401  (the kernel of a hub that ships the types imports them)
from hubgate.options import Options
from hubgate.tooling.hubrunner import RunningHub
from hubgate.widgets import options_widget
from tests.browser.test_sidebar import open_lab, open_sidebar
from tests.e2e.hub_api import HubgateAPI, checked, run_client, values
from tests.e2e.service_api import ServiceApi
from tests.fixtures.hub import start_hub

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

# The service's config: the operator's option set uses the toy types like any other.
TOY_OPTIONS = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from hubgate.options import Bool, Float, Integer, Mapping, OptionSet, Select, String
from tests.toy_fields import Duration, Seed


def to_config(options):
    return {{
        "worker_cores": options.worker_cores,
        "worker_memory": int(options.worker_memory * 2**30),
    }}


c.HubgateService.cluster_options = OptionSet(
    Integer("worker_cores", 1, min=1, max=2),
    Float("worker_memory", 1, min=0.5, max=2),
    String("image", "img"),
    Bool("gpu"),
    Select("profile", options=["small", "large"]),
    Mapping("environment"),
    Duration("walltime", "30m", label="Wall time", help="How long the cluster may run."),
    Seed("seed", label="Seed"),
    handler=to_config,
)
"""

# The official client: reads the options, sets every one it has, creates a cluster;
# then a walltime only the service can refuse.
OFFICIAL_CLIENT = """
import json
from dask_gateway import Gateway
with Gateway() as gateway:
    options = gateway.cluster_options(use_local_defaults=False)
    print("FIELDS", json.dumps({k: type(options._fields[k]).__name__ for k in options}))
    options.worker_cores = 2
    options.worker_memory = 1.5
    options.image = "other"
    options.gpu = True
    options.profile = "large"
    options.environment = {"A": "1"}
    options.walltime = "2h"
    cluster = gateway.new_cluster(options, shutdown_on_close=False)
    print("CLUSTER", cluster.name)
    cluster.close()
    options.walltime = "soon"
    try:
        gateway.new_cluster(options, shutdown_on_close=False)
    except Exception as exc:
        print("ERROR", type(exc).__name__, str(exc))
"""


@pytest.fixture(scope="module")
def toy_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHub]:
    running = start_hub(tmp_path_factory.mktemp("toy-hub"), hubgate_config_extra=TOY_OPTIONS)
    yield running
    running.stop()


def test_the_official_client_shows_sets_and_sends_the_new_type(
    toy_hub: RunningHub, tmp_path: Path
) -> None:
    out = checked(run_client(toy_hub, "alice", OFFICIAL_CLIENT, tmp_path))
    [fields] = values(out, "FIELDS")
    # walltime as a string; seed left out (the service applies its default)
    assert json.loads(fields) == {
        "worker_cores": "Integer",
        "worker_memory": "Float",
        "image": "String",
        "gpu": "Bool",
        "profile": "Select",
        "environment": "Mapping",
        "walltime": "String",
    }
    [name] = values(out, "CLUSTER")
    api = HubgateAPI(toy_hub, "alice")
    try:
        record = api.wait_running(name)
        assert {k: v for k, v in record["options"].items() if not k.startswith("hubgate:")} == {
            "worker_cores": 2,
            "worker_memory": 1.5,
            "image": "other",
            "gpu": True,
            "profile": "large",
            "environment": {"A": "1"},
            "walltime": "2h",
            "seed": 7,
        }
    finally:
        api.stop_all()
    [error] = values(out, "ERROR")
    assert error.endswith("walltime must be a number followed by s, m or h, got 'soon'"), error


def test_the_widget_shows_the_new_type_from_the_served_options(toy_hub: RunningHub) -> None:
    reply = ServiceApi(toy_hub).ok("GET", "/api/hubgate/options")  # checked with openapi.json
    walltime = reply["schema"]["properties"]["walltime"]
    assert walltime["pattern"] == "^[0-9]+[smh]$" and walltime["title"] == "Wall time"
    assert reply["ui_schema"]["ui:order"][-2:] == ["walltime", "seed"]
    form = options_widget(Options._from_spec(reply["fields"]))
    assert form is not None
    form.inputs["walltime"].value = "soon"
    assert form.errors == {
        "walltime": "walltime must be a number followed by s, m or h, got 'soon'"
    }
    form.inputs["walltime"].value = "90s"
    form.inputs["seed"].value = "-1"
    assert form.errors == {"seed": "seed cannot be negative, got -1"}
    assert form.options.walltime == "90s"


async def test_the_lab_form_shows_the_new_type(toy_hub: RunningHub, new_page: Any) -> None:
    page = await open_lab(new_page, toy_hub, "bob")
    panel = await open_sidebar(page)
    await panel.locator(".hubgate-NewCluster").click()
    form = panel.locator(".hubgate-OptionsForm")
    await form.wait_for()
    row = form.locator('.hubgate-OptionsForm-row:has([data-field="walltime"])')
    await expect(row.locator("label")).to_have_text("Wall time")
    await expect(row.locator(".hubgate-OptionsForm-help")).to_have_text(
        "How long the cluster may run."
    )
    walltime = row.locator("input")
    await expect(walltime).to_have_value("30m")
    await walltime.fill("soon")
    await expect(row.locator(".hubgate-OptionsForm-error")).to_have_text(
        "walltime must be a number followed by s, m or h, got 'soon'"
    )
    await expect(panel.locator(".hubgate-CreateCluster")).to_be_disabled()
    seed = form.locator('input[data-field="seed"]')
    await expect(seed).to_have_value("7")
    await walltime.fill("2h")
    await seed.fill("-1")
    await expect(
        form.locator('.hubgate-OptionsForm-row:has([data-field="seed"]) .hubgate-OptionsForm-error')
    ).to_have_text("seed cannot be negative, got -1")
    await seed.fill("3")
    await expect(row.locator(".hubgate-OptionsForm-error")).to_have_text("")
    await expect(panel.locator(".hubgate-CreateCluster")).to_be_enabled()
    await panel.locator(".hubgate-CancelCluster").click()
