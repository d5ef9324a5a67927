"""Orphan discovery on clouds through libcloud: its real dummy driver, and the real EC2 driver
replaying a recorded DescribeInstances response from a server on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

pytest.importorskip("libcloud")

from libcloud.compute.drivers.dummy import DummyNodeDriver  # noqa: E402
from libcloud.compute.drivers.ec2 import EC2NodeDriver  # noqa: E402

from helpers.drift import CONFIG  # noqa: E402
from helpers.cli import run  # noqa: E402
from helpers.paths import FIXTURES  # noqa: E402
from infraplan.drift import list_orphans  # noqa: E402
from infraplan.drift.orphans import LibcloudFinder, has_gpu  # noqa: E402
from infraplan.state import StateStore  # noqa: E402
from infraplan.state.store import ResourceRecord, StateSnapshot  # noqa: E402
from helpers.timing import within  # noqa: E402

FIXTURE = FIXTURES / "ec2" / "ec2_describe_instances.xml"
LINEAGE = "5f1c0d2e9a7b4c3d8e6f0a1b2c3d4e5f"


def snapshot(*attrs: dict) -> StateSnapshot:
    recs = [ResourceRecord(f"fleet.web[{i}]", "", "replica", "sky", "ready", a, None, [], None, "t", "t")
            for i, a in enumerate(attrs)]
    return StateSnapshot(LINEAGE, 3, recs)


@pytest.fixture
def ec2_replay():
    """An EC2 API stand-in on 127.0.0.1 answering with the recorded response; keeps the requests."""
    seen: list[dict] = []
    body = FIXTURE.read_text().replace("LINEAGE", LINEAGE).encode()

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _answer(self, query: str):
            seen.append({"query": parse_qs(query), "auth": self.headers.get("Authorization", "")})
            self.send_response(200)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self._answer(urlsplit(self.path).query)

        def do_POST(self):
            self._answer(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode())

    server = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    driver = EC2NodeDriver("AKIDEXAMPLE", "secret", region="us-east-1", host="127.0.0.1",
                           port=server.server_address[1], secure=False)
    yield driver, seen
    server.shutdown()
    server.server_close()


def test_ec2_recorded_listing_finds_tagged_gpu_instances_in_no_state(ec2_replay):
    driver, seen = ec2_replay
    finder = LibcloudFinder(driver, lineage=LINEAGE, name="ec2:us-east-1")
    listed = {i.instance_id: i for i in finder.list_instances()}
    # ours and with GPUs: the lineage tag (SkyPilot clusters' nodes carry it as a resource label);
    # not the t3.micro, not another project's, not the terminated one
    assert sorted(listed) == ["i-0a1b2c3d4e5f60001", "i-0a1b2c3d4e5f60002", "i-0a1b2c3d4e5f60003", "i-0a1b2c3d4e5f60007"]
    assert listed["i-0a1b2c3d4e5f60001"].detail["machine_type"] == "g5.xlarge"
    assert listed["i-0a1b2c3d4e5f60002"].detail["cluster"] == "infraplan-chat-0-2ea4"
    assert listed["i-0a1b2c3d4e5f60002"].detail["address"] == "fleet-chat-0"
    q = seen[0]["query"]  # a real, signed EC2 API request
    assert q["Action"] == ["DescribeInstances"] and q["AWSAccessKeyId"] == ["AKIDEXAMPLE"] and q["Signature"][0]

    # the state's fleet.web[1] is the SkyPilot cluster whose node (…0003) says so in its address label
    snap = snapshot({"instance_id": "i-0a1b2c3d4e5f60007"}, {"cluster_name": "infraplan-web-1"})
    orphans, n, errors = list_orphans(snap, None, set(), [finder], timeout=10)
    assert n == 4 and errors == []
    assert sorted(i.instance_id for i, _ in orphans) == ["i-0a1b2c3d4e5f60001", "i-0a1b2c3d4e5f60002"]


def test_dummy_driver_tagged_nodes_are_found_and_cleanup_destroys_them():
    driver = DummyNodeDriver(0)
    size, image = driver.list_sizes()[0], driver.list_images()[0]
    mine = driver.create_node("lost-replica", size, image)
    mine.extra.update(tags={"infraplan-lineage": LINEAGE}, instance_type="g5.xlarge")
    cpu = driver.create_node("bastion", size, image)
    cpu.extra.update(tags={"infraplan-lineage": LINEAGE}, instance_type="m5.large")
    other = driver.create_node("other-project", size, image)
    other.extra.update(labels={"infraplan-lineage": "other"}, instance_type="a2-highgpu-1g")
    finder = LibcloudFinder(driver, lineage=LINEAGE, name="dummy")
    orphans, n, _ = list_orphans(snapshot(), None, set(), [finder], timeout=5)
    assert [i.name for i, _ in orphans] == [mine.name]
    assert LibcloudFinder(driver, lineage=LINEAGE, gpu_only=False).list_instances()[1].name == cpu.name
    inst, lister = orphans[0]
    lister.delete_instance(inst)
    assert mine.name not in [node.name for node in driver.list_nodes()]
    assert other.name in [node.name for node in driver.list_nodes()]


def test_gpu_detection_by_machine_type():
    class N:
        def __init__(self, **extra):
            self.extra, self.size = extra, None

    assert has_gpu(N(instance_type="p5.48xlarge")) and has_gpu(N(machineType="zones/x/machineTypes/a3-highgpu-8g"))
    assert has_gpu(N(properties={"hardwareProfile": {"vmSize": "Standard_NC24ads_A100_v4"}}))
    assert has_gpu(N(instance_type="c7i.large")) is False and has_gpu(N()) is None
    assert has_gpu(N(guestAccelerators=[{"acceleratorType": "nvidia-l4"}]))


def test_a_cloud_that_fails_or_hangs_is_an_error_not_silence():
    class Broken:
        name = "ec2:broken"

        def list_instances(self):
            raise RuntimeError("AuthFailure: credentials expired")

    class Hangs:
        name = "gce:slow"

        def list_instances(self):
            time.sleep(3)
            return []

    t0 = time.monotonic()
    _, _, errors = list_orphans(snapshot(), None, set(), [Broken(), Hangs()], timeout=0.5)
    assert time.monotonic() - t0 < within(2)
    by = {e.address: e for e in errors}
    assert "AuthFailure" in by["cloud.ec2:broken"].summary and by["cloud.ec2:broken"].kind == "error"
    assert "no answer within 0.5s" in by["cloud.gce:slow"].summary


def test_gce_n1_node_with_attached_gpus_is_counted_as_gpu():
    """libcloud's GCE driver keeps `machineType` but drops the instance's `guestAccelerators`:
    an n1 machine with a T4 attached is read back from the instance resource, not skipped."""
    from libcloud.compute.base import Node
    from libcloud.compute.types import NodeState

    instances = {  # GET zones/ZONE/instances/NAME, as GCE answers it (trimmed)
        "gpu-n1": {"name": "gpu-n1", "machineType": "zones/us-central1-a/machineTypes/n1-standard-8",
                   "guestAccelerators": [{"acceleratorType": "zones/us-central1-a/acceleratorTypes/nvidia-tesla-t4",
                                          "acceleratorCount": 1}]},
        "cpu-n1": {"name": "cpu-n1", "machineType": "zones/us-central1-a/machineTypes/n1-standard-8"},
    }
    asked = []

    class Zone:
        name = "us-central1-a"

    class Connection:
        def request(self, path, method="GET"):
            asked.append(path)
            return type("R", (), {"object": instances[path.rsplit("/", 1)[-1]]})()

    class Driver:
        type = "gce"
        connection = Connection()

        def list_nodes(self):
            return [Node(id=str(i), name=n, state=NodeState.RUNNING, public_ips=[], private_ips=[], driver=self,
                         size="n1-standard-8",
                         extra={"machineType": f"https://www.googleapis.com/compute/v1/projects/p/{raw['machineType']}",
                                "zone": Zone(), "labels": {"infraplan-lineage": LINEAGE,
                                                           "infraplan-address": "fleet-chat-0"}})
                    for i, (n, raw) in enumerate(instances.items())]

    assert has_gpu(Driver().list_nodes()[0]) is None  # the machine type alone cannot say
    listed = LibcloudFinder(Driver(), lineage=LINEAGE, name="gce:us-central1-a").list_instances()
    assert [(i.name, i.detail["gpu"]) for i in listed] == [("gpu-n1", True)]
    assert asked == ["/zones/us-central1-a/instances/gpu-n1", "/zones/us-central1-a/instances/cpu-n1"]


def test_cli_cloud_listing_is_opt_in_and_runs(tmp_path):
    (tmp_path / "main.yaml").write_text(CONFIG.format(replicas=0))
    StateStore(tmp_path / "infraplan.db").close()
    res = run("drift", str(tmp_path), "--cloud", "dummy", "--json")
    assert res.exit_code == 0, res.output
    assert '"instances_listed": 0' in res.stdout  # the dummy driver's own nodes carry no project tag
    res = run("drift", str(tmp_path), "--cloud", "ec2:us-east-1")
    assert res.exit_code == 1 and "AWS_ACCESS_KEY_ID" in res.output


def test_providers_are_told_the_state_lineage(tmp_path):
    from infraplan.workspace import Workspace

    (tmp_path / "main.yaml").write_text(CONFIG.format(replicas=0))
    assert Workspace(tmp_path).providers().lineage == ""  # no state yet
    with StateStore(tmp_path / "infraplan.db") as store:
        lineage = store.lineage
    assert lineage and Workspace(tmp_path).providers().lineage == lineage
