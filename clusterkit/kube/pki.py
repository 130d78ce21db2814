"""The cluster's certificates and kubeconfig (openssl): one CA, the API server's serving
certificate, one client certificate every component and kubectl share, the service-account key."""

from __future__ import annotations

from pathlib import Path

import yaml

from clusterkit.kube.layout import API_SERVICE_IP, KUBECONFIG, NODE_IP, STATE, run


def certificates() -> Path:
    """One CA; the API server's serving certificate; one system:masters client certificate that
    every component and kubectl use (a single-user, single-node test cluster); the service-account
    signing key."""
    d = STATE / "pki"
    if (d / "admin.crt").exists():
        return d
    d.mkdir(parents=True, exist_ok=True)
    run(
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "30",
        "-keyout",
        d / "ca.key",
        "-out",
        d / "ca.crt",
        "-subj",
        "/CN=mnist-serve-ca",
    )
    sans = ",".join(
        [f"IP:{ip}" for ip in (NODE_IP, API_SERVICE_IP, "127.0.0.1")]
        + [
            f"DNS:{n}"
            for n in (
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                "localhost",
            )
        ]
    )
    for name, subject, ext in (
        ("apiserver", "/CN=kube-apiserver", f"subjectAltName={sans}\nextendedKeyUsage=serverAuth"),
        ("admin", "/O=system:masters/CN=mnist-serve-admin", "extendedKeyUsage=clientAuth"),
    ):
        (d / f"{name}.ext").write_text(ext + "\n")
        run(
            "openssl",
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            d / f"{name}.key",
            "-out",
            d / f"{name}.csr",
            "-subj",
            subject,
        )
        run(
            "openssl",
            "x509",
            "-req",
            "-in",
            d / f"{name}.csr",
            "-CA",
            d / "ca.crt",
            "-CAkey",
            d / "ca.key",
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            d / f"{name}.ext",
            "-out",
            d / f"{name}.crt",
        )
    run("openssl", "genrsa", "-out", d / "sa.key", "2048")
    run("openssl", "rsa", "-in", d / "sa.key", "-pubout", "-out", d / "sa.pub")
    return d


def kubeconfig(d: Path) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "mnist-serve",
                "cluster": {"server": f"https://{NODE_IP}:6443", "certificate-authority": str(d / "ca.crt")},
            }
        ],
        "users": [
            {
                "name": "admin",
                "user": {"client-certificate": str(d / "admin.crt"), "client-key": str(d / "admin.key")},
            }
        ],
        "contexts": [{"name": "mnist-serve", "context": {"cluster": "mnist-serve", "user": "admin"}}],
        "current-context": "mnist-serve",
    }
    KUBECONFIG.write_text(yaml.safe_dump(config))
