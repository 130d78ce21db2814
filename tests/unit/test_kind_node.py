"""The pieces `make kind-up KIND_LOCAL=1` is made of that can be checked without an engine: the
runtime wrapper that drops CAP_SYS_RESOURCE, the node image's containerd and network settings, and
the staging of programs with their libraries into FROM-scratch images."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from clusterkit.kind import cluster, nodeimage, preload
from clusterkit.kube import images
from clusterkit.localray import REPO

WRAPPER = Path(nodeimage.__file__).with_name("runc-nocap")
CAPS = ["CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_SYS_RESOURCE", "CAP_NET_ADMIN"]


def run_wrapper(*args: str, tmp_path: Path) -> list[str]:
    """The wrapper with a stand-in runc that records the arguments it was run with."""
    log = tmp_path / "argv.json"
    fake = tmp_path / "runc"
    fake.write_text(f'#!/usr/bin/python3\nimport json, sys\njson.dump(sys.argv[1:], open("{log}", "w"))\n')
    fake.chmod(0o755)
    subprocess.run([str(WRAPPER), *args], check=True, env={**os.environ, "MNIST_SERVE_RUNC": str(fake)})
    return json.loads(log.read_text())


def capabilities(process: dict) -> dict[str, list[str]]:
    return {kind: list(CAPS) for kind in ("bounding", "effective", "permitted")} | process


@pytest.mark.parametrize("command", ["create", "run"])
def test_the_runtime_drops_cap_sys_resource_from_a_new_container(tmp_path, command):
    spec = {"process": {"capabilities": capabilities({}), "args": ["/sbin/init"]}, "root": {"path": "rootfs"}}
    (tmp_path / "config.json").write_text(json.dumps(spec))
    global_flags = ["--root", "/run/docker/runtime-runc/moby", "--log", "/x/log.json", "--log-format", "json"]
    argv = run_wrapper(*global_flags, command, "--bundle", str(tmp_path), "node-1", tmp_path=tmp_path)
    assert argv == [*global_flags, command, "--bundle", str(tmp_path), "node-1"]
    caps = json.loads((tmp_path / "config.json").read_text())["process"]["capabilities"]
    assert caps == {kind: ["CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_NET_ADMIN"] for kind in caps}


def test_the_runtime_drops_it_from_an_exec_process_and_leaves_other_commands_alone(tmp_path):
    process = tmp_path / "process.json"
    process.write_text(json.dumps({"args": ["sh"], "capabilities": capabilities({})}))
    run_wrapper("exec", "--process", str(process), "--detach", "node-1", tmp_path=tmp_path)
    assert "CAP_SYS_RESOURCE" not in json.dumps(json.loads(process.read_text()))
    # A container named like a command is still only a container: `delete` edits nothing.
    (tmp_path / "config.json").write_text(json.dumps({"process": {"capabilities": capabilities({})}}))
    assert run_wrapper("delete", "--force", "create", tmp_path=tmp_path) == ["delete", "--force", "create"]
    assert "CAP_SYS_RESOURCE" in (tmp_path / "config.json").read_text()


def test_the_node_images_containerd_gets_its_two_changes_or_fails_loudly(tmp_path):
    (version,) = re.findall(r"^KIND_VERSION \?= (v\S+)$", (REPO / "Makefile").read_text(), re.M)
    kind = nodeimage.kind_module(version)
    (tmp_path / "etc" / "containerd").mkdir(parents=True)
    config = tmp_path / "etc" / "containerd" / "config.toml"
    config.write_text((kind / "images" / "base" / "files" / "etc" / "containerd" / "config.toml").read_text())
    nodeimage.containerd_config(tmp_path)
    text = config.read_text()
    assert f'sandbox_image = "{preload.PAUSE}"' in text and "restrict_oom_score_adj = true" in text
    with pytest.raises(RuntimeError, match="no longer has 'sandbox_image"):
        nodeimage.containerd_config(tmp_path)  # kind moved the line: say so, don't ship it unchanged


def test_the_static_network_is_the_first_pod_range_of_the_clusters_pod_subnet(tmp_path):
    nodeimage.network(tmp_path)
    conflist = json.loads((tmp_path / "etc" / "cni" / "net.d" / "10-kindnet.conflist").read_text())
    (ptp, portmap) = conflist["plugins"]
    assert (ptp["type"], portmap["type"]) == ("ptp", "portmap")
    ((pod_range,),) = ptp["ipam"]["ranges"]
    subnet, _ = cluster.ranges()
    first = next(ipaddress.ip_network(subnet).subnets(new_prefix=24))
    assert pod_range["subnet"] == str(first) == nodeimage.POD_RANGE
    (configmap,) = yaml.safe_load_all((tmp_path / "kind" / "manifests" / "default-cni.yaml").read_text())
    assert json.loads(configmap["data"]["10-kindnet.conflist"]) == conflist


def test_staging_a_program_takes_its_libraries_and_it_runs_alone(tmp_path):
    out = images.stage(Path("/"), ["/usr/bin/dash", "/usr/bin/mkdir"], tmp_path / "tree")
    (out / "usr" / "bin" / "sh").symlink_to("dash")
    assert (out / "lib64").is_symlink() and list((out / "usr" / "lib").rglob("libc.so.6"))
    result = subprocess.run(
        ["chroot", str(out), "/bin/sh", "-c", "mkdir -p /made/here && echo ok"],
        capture_output=True,
        text=True,
    )
    assert (result.returncode, result.stdout) == (0, "ok\n"), result.stderr
    assert (out / "made" / "here").is_dir()
