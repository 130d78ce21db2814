#!/usr/bin/env bash
# Builds the pinned cluster binaries from the Go module proxy into
# ~/.cache/mnist-serve/<name>-<version>/, once per version: a binary already
# there is kept, so only a changed pin rebuilds. Each step's time is printed.
set -euo pipefail
here=$(cd "$(dirname "$0")/go" && pwd)
cache=${MNIST_SERVE_CACHE:-$HOME/.cache/mnist-serve}
flags=(-trimpath)

version_of() { # version of module $2 required by wrapper $1
	(cd "$here/$1" && go list -m -f '{{.Version}}' "$2")
}

timed() { # label, command...
	local t0=$SECONDS
	"${@:2}"
	echo "[kube-build] $1: $((SECONDS - t0)) s"
}

# Static (no cgo) like upstream's release builds: the operator, CoreDNS and
# pause run in FROM-scratch images.
export CGO_ENABLED=0

build() { # wrapper dir, out dir, package, binary name, extra ldflags
	local out=$2/$4
	[[ -x $out ]] && return 0
	mkdir -p "$2"
	(cd "$here/$1" && timed "build $4" go build "${flags[@]}" -ldflags "-s -w $5" -o "$out.tmp" "$3")
	mv "$out.tmp" "$out"
}

k8s=$(version_of kubernetes k8s.io/kubernetes)
etcd=$(version_of etcd go.etcd.io/etcd/server/v3)
coredns=$(version_of coredns github.com/coredns/coredns)
kuberay=$(version_of kuberay github.com/ray-project/kuberay/ray-operator)

for m in kubernetes etcd coredns kuberay pause; do
	(cd "$here/$m" && timed "download $m" go mod download)
done

# The server reports this version to helm and the operator; without it, v0.0.0.
minor=${k8s#v1.}; minor=${minor%%.*}
kv=""
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	kv+=" -X $p.gitVersion=$k8s -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
done
for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
	build kubernetes "$cache/kubernetes-$k8s" "k8s.io/kubernetes/cmd/$c" "$c" "$kv"
done
build etcd "$cache/etcd-$etcd" go.etcd.io/etcd/server/v3 etcd ""
build coredns "$cache/coredns-$coredns" . coredns ""
build kuberay "$cache/kuberay-$kuberay" github.com/ray-project/kuberay/ray-operator ray-operator ""
pause=$(cd "$here/pause" && go list -f '{{.Module.GoVersion}}' .)-$(sha256sum "$here/pause/main.go" | cut -c1-12)
build pause "$cache/pause-$pause" . pause ""
