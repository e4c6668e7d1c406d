"""Small valid documents for control-plane tests."""

from __future__ import annotations

from typing import Any

IMAGE = """\
apiVersion: fleetplane/v1
kind: NodeImage
metadata:
  name: ubuntu
spec:
  os: ubuntu-22.04
  containerRuntime: {name: containerd, version: "1.7"}
  arches: [amd64]
"""

SITE_TEMPLATE = """\
apiVersion: fleetplane/v1
kind: Site
metadata:
  name: {name}
  labels: {{tier: edge, region: {region}}}
spec:
  tier: edge
  region: {region}
  residencyZone: eu
  nodePools:
    - name: cpu
      count: 2
      cpu: 8
      memory: 32Gi
      nodeImage: {image}
  cost:
    opex: {{cpuHour: 0.04/h}}
"""


def site(name: str, region: str = "eu-west", image: str = "ubuntu") -> str:
    return SITE_TEMPLATE.format(name=name, region=region, image=image)


def image_document(name: str = "ubuntu", os_name: str = "ubuntu-22.04") -> dict[str, Any]:
    return {
        "apiVersion": "fleetplane/v1",
        "kind": "NodeImage",
        "metadata": {"name": name, "labels": {"team": "infra"}},
        "spec": {
            "os": os_name,
            "containerRuntime": {"name": "containerd", "version": "1.7"},
            "arches": ["amd64"],
        },
    }


def secret_document(name: str = "db", value: str = "correct-horse-battery") -> dict[str, Any]:
    return {
        "apiVersion": "fleetplane/v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "spec": {"data": {"password": value}},
    }


def documents(*texts: str) -> str:
    return "---\n".join(texts)
