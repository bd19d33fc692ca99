#!/usr/bin/env python3
"""Checks the Helm chart charts/certorder with the real Helm v4 engine (the helm-python-sdk package).

    python3 .ci/helm-check.py --out DIR

1. lints the chart (strict) with the default values, with ci/all-on-values.yaml and in namespaced
   mode: no errors and no warnings;
2. renders it with those values (and a minimal variant) as `helm install certorder
   ./charts/certorder -n certorder-system` would, and writes each variant's manifests to
   DIR/<variant>.yaml and its NOTES.txt to DIR/<variant>-notes.txt;
3. checks that wrong values are refused by values.schema.json with a message naming the value.

    python3 .ci/helm-check.py --install KUBECONFIG

instead installs the chart with Helm into the cluster of KUBECONFIG (`helm install certorder
./charts/certorder -n certorder-system`, CRDs included), checks with kubectl that every object of
the release exists, uninstalls it and checks they are gone (the CRDs stay, as with Helm). Releases
are kept in memory, not in Secrets, so the testbed (which speaks JSON only, while Helm stores
releases with protobuf) can serve it.

tests/install.rs runs this script, then parses the rendered objects as Kubernetes types and
applies them with kubectl to the testbed API server. Exits non-zero, saying why, on any problem.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "certorder"
REQUIREMENTS = ROOT / ".ci" / "requirements.txt"
RELEASE = "certorder"
NAMESPACE = "certorder-system"

# Values that must be refused, each with a fragment of the error Helm must print.
WRONG_VALUES = [
    ({"replicaCount": 2}, "/leaderElection/enabled"),
    ({"leaderElection": {"enabled": True, "leaseDuration": "15"}}, "/leaderElection/leaseDuration"),
    ({"operator": {"logFormat": "xml"}}, "/operator/logFormat"),
    ({"watchNamespaces": ["Team_A"]}, "/watchNamespaces/0"),
    ({"replicas": 1}, "additional properties 'replicas' not allowed"),
    ({"defaultProvider": {"review": "auto"}}, "/defaultProvider/review"),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ({"podDisruptionBudget": {"maxUnavailable": "half"}}, "/podDisruptionBudget/maxUnavailable"),
    ({"operator": {"dnsServers": ["dns.example.com"]}}, "/operator/dnsServers/0"),
]


def pinned_version() -> str:
    for line in REQUIREMENTS.read_text().splitlines():
        if line.startswith("helm-python-sdk=="):
            return line.split("==", 1)[1].strip()
    sys.exit(f"{REQUIREMENTS} does not pin helm-python-sdk")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--out", type=pathlib.Path, help="directory for the rendered manifests")
    mode.add_argument("--install", metavar="KUBECONFIG", type=pathlib.Path,
                      help="install and uninstall the chart in this cluster")
    args = parser.parse_args()

    want = pinned_version()
    try:
        import helm_python as helm
    except ImportError:
        sys.exit(f"helm-python-sdk is not installed; install it with: python3 -m pip install -r {REQUIREMENTS.relative_to(ROOT)}")
    if helm.__version__ != want:
        sys.exit(f"helm-python-sdk {helm.__version__} is installed but .ci/requirements.txt pins {want}; "
                 f"install it with: python3 -m pip install -r {REQUIREMENTS.relative_to(ROOT)}")
    print(f"helm-python-sdk {helm.__version__} (Helm {helm.helm_sdk_version()})")
    if args.install:
        return install_and_uninstall(helm, args.install)

    all_on = helm.values_from_yaml((CHART / "ci" / "all-on-values.yaml").read_text())
    variants = {
        "default": {},
        "all-on": all_on,
        "namespaced": {"watchNamespaces": ["team-a", "team-b"]},
        "minimal": {
            "rbac": {"create": False},
            "serviceAccount": {"create": False, "name": "existing-account"},
            "defaultProvider": {"enabled": False},
        },
    }
    problems: list[str] = []

    for name, values in variants.items():
        report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE)
        for m in report["messages"]:
            # 1 is INFO (e.g. "icon is recommended"); 2 WARNING and 3 ERROR fail the check.
            if m["severity"] >= 2:
                problems.append(f"lint ({name}): {m['path']}: {m['error'].strip()}")
        problems.extend(f"lint ({name}): {e.strip()}" for e in report["errors"])
        infos = [m["error"] for m in report["messages"] if m["severity"] < 2]
        print(f"lint {name}: {len(report['messages']) - len(infos)} errors or warnings; info: {infos}")

    args.out.mkdir(parents=True, exist_ok=True)
    with helm.Chart.load(CHART) as chart:
        for name, values in variants.items():
            rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
            docs = []
            notes = ""
            for path in sorted(rendered):
                if path.endswith("NOTES.txt"):
                    notes = rendered[path]
                elif rendered[path].strip():
                    docs.append(f"# Source: {path}\n{rendered[path].strip()}\n")
            (args.out / f"{name}.yaml").write_text("---\n".join(docs))
            (args.out / f"{name}-notes.txt").write_text(notes)
            print(f"render {name}: {len(docs)} templates -> {args.out / (name + '.yaml')}")

        for values, fragment in WRONG_VALUES:
            try:
                chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
            except helm.HelmValuesError as e:
                if fragment not in str(e):
                    problems.append(f"schema: {values} refused, but the message lacks {fragment!r}: {e}")
                else:
                    print(f"schema refuses {values}: {str(e).strip().splitlines()[-1].strip()}")
            else:
                problems.append(f"schema: {values} was accepted; values.schema.json must refuse it")

    if problems:
        print("helm-check: FAILED", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    print("helm-check: ok")
    return 0


def kubectl(kubeconfig: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KUBECONFIG=str(kubeconfig))
    return subprocess.run(["kubectl", *args], env=env, capture_output=True, text=True, check=False)


def install_and_uninstall(helm, kubeconfig: pathlib.Path) -> int:
    """`helm install`, every object there, `helm uninstall`, every object gone."""
    config = helm.Config(kubeconfig_path=kubeconfig, namespace=NAMESPACE, storage_driver="memory")
    release = config.install(CHART, RELEASE, namespace=NAMESPACE, timeout=120)
    if release["status"] != "deployed":
        print(f"helm install: release is {release['status']}", file=sys.stderr)
        return 1
    print(f"helm install {RELEASE}: {release['status']}, revision {release['revision']}")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as manifest:
        manifest.write(release["manifest"])
        manifest.flush()
        got = kubectl(kubeconfig, "get", "-f", manifest.name, "-o", "name")
        if got.returncode != 0:
            print(f"after helm install, kubectl get -f <manifest> failed:\n{got.stderr}", file=sys.stderr)
            return 1
        names = got.stdout.split()
        print(f"installed {len(names)} objects: {' '.join(names)}")
        crds = kubectl(kubeconfig, "get", "crd", "-o", "name").stdout.split()
        for crd in ("certificateorders.certorder.io", "clustercertificateproviders.certorder.io"):
            if f"customresourcedefinition.apiextensions.k8s.io/{crd}" not in crds:
                print(f"helm install did not install the CRD {crd} from crds/", file=sys.stderr)
                return 1
        result = config.uninstall(RELEASE, timeout=120)
        print(f"helm uninstall {RELEASE}: {result['release']['status']}")
        left = kubectl(kubeconfig, "get", "-f", manifest.name, "-o", "name", "--ignore-not-found")
        if left.returncode != 0 or left.stdout.strip():
            print(f"after helm uninstall these remain:\n{left.stdout}{left.stderr}", file=sys.stderr)
            return 1
    print("helm-check: installed and uninstalled")
    return 0


if __name__ == "__main__":
    sys.exit(main())
