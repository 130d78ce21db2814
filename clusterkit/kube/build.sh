#!/usr/bin/env bash
# Builds the pinned cluster binaries from the Go module proxy into
# ~/.cache/mnist-serve/<name>-<version>/, once per version: a binary already
# there is kept, so only a changed pin rebuilds. Each step's time is printed.
#
#   build.sh        what `make kube-up` runs: Kubernetes (kubeadm too), etcd,
#                   CoreDNS, the KubeRay operator, Traefik, pause, kube-network-policies
#   build.sh kind   and what the kind node image adds: containerd, crictl, the
#                   CNI plugins, local-path-provisioner
#   build.sh argocd and Argo CD (what `make gitops-test` adds), with Go 1.27
#   build.sh --check [kind]
#                   builds nothing: lists what is not built yet, exits 1 if anything
set -euo pipefail
here=$(cd "$(dirname "$0")/go" && pwd)
cache=${MNIST_SERVE_CACHE:-$HOME/.cache/mnist-serve}
flags=(-trimpath)
check=
if [[ ${1:-} == --check ]]; then
	check=1
	shift
fi
sets=(kube "$@")
missing=0

version_of() { # version of module $2 required by wrapper $1
	(cd "$here/$1" && go list -m -f '{{.Version}}' "$2")
}

timed() { # label, command...
	local t0=$SECONDS
	"${@:2}"
	echo "[kube-build] $1: $((SECONDS - t0)) s"
}

# Static (no cgo) like upstream's release builds: everything runs in
# FROM-scratch images or on a node without Go's C dependencies.
export CGO_ENABLED=0

build() { # wrapper dir, out dir, package, binary name, extra ldflags, [build tags]
	local out=$2/$4
	[[ -x $out ]] && return 0
	if [[ -n $check ]]; then
		echo "not built: $out"
		missing=1
		return 0
	fi
	mkdir -p "$2"
	(cd "$here/$1" && timed "build $4" go build "${flags[@]}" -tags "${6:-}" -ldflags "-s -w $5" -o "$out.tmp" "$3")
	mv "$out.tmp" "$out"
}

download() { # wrappers...
	[[ -n $check ]] && return 0
	for m in "$@"; do
		(cd "$here/$m" && timed "download $m" go mod download)
	done
}

kube() {
	local k8s etcd coredns kuberay traefik knp pause minor kv=""
	k8s=$(version_of kubernetes k8s.io/kubernetes)
	etcd=$(version_of etcd go.etcd.io/etcd/server/v3)
	coredns=$(version_of coredns github.com/coredns/coredns)
	kuberay=$(version_of kuberay github.com/ray-project/kuberay/ray-operator)
	traefik=$(version_of traefik github.com/traefik/traefik/v3)
	knp=$(version_of kube-network-policies sigs.k8s.io/kube-network-policies)
	download kubernetes etcd coredns kuberay traefik kube-network-policies pause
	# The server reports this version to helm and the operator; without it, v0.0.0.
	minor=${k8s#v1.}
	minor=${minor%%.*}
	for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		kv+=" -X $p.gitVersion=$k8s -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
	done
	for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl kubeadm; do
		build kubernetes "$cache/kubernetes-$k8s" "k8s.io/kubernetes/cmd/$c" "$c" "$kv"
	done
	build etcd "$cache/etcd-$etcd" go.etcd.io/etcd/server/v3 etcd ""
	# Keyed by main.go too: it chooses the plugins.
	coredns+=-$(sha256sum "$here/coredns/main.go" | cut -c1-12)
	build coredns "$cache/coredns-$coredns" . coredns ""
	build kuberay "$cache/kuberay-$kuberay" github.com/ray-project/kuberay/ray-operator ray-operator ""
	# Upstream's release sets the version (its Makefile's VERSION); the web UI is not built (no npm step).
	build traefik "$cache/traefik-$traefik" github.com/traefik/traefik/v3/cmd/traefik traefik \
		"-X github.com/traefik/traefik/v3/pkg/version.Version=$traefik"
	# The NetworkPolicy agent (its main package is cmd/; upstream's Dockerfile names it netpol).
	build kube-network-policies "$cache/kube-network-policies-$knp" sigs.k8s.io/kube-network-policies/cmd \
		kube-network-policies ""
	pause=$(cd "$here/pause" && go list -f '{{.Module.GoVersion}}' .)-$(sha256sum "$here/pause/main.go" | cut -c1-12)
	build pause "$cache/pause-$pause" . pause ""
}

kind() {
	local containerd crictl cni lpp
	containerd=$(version_of containerd github.com/containerd/containerd/v2)
	crictl=$(version_of cri-tools sigs.k8s.io/cri-tools)
	cni=$(version_of cni-plugins github.com/containernetworking/plugins)
	lpp=$(version_of local-path-provisioner github.com/rancher/local-path-provisioner)
	download containerd cri-tools cni-plugins local-path-provisioner
	# The snapshotters kind leaves out too (images/base/Dockerfile, BUILDTAGS).
	for c in containerd ctr containerd-shim-runc-v2; do
		build containerd "$cache/containerd-$containerd" "github.com/containerd/containerd/v2/cmd/$c" "$c" \
			"-X github.com/containerd/containerd/v2/version.Version=$containerd" "no_btrfs no_devmapper no_zfs"
	done
	build cri-tools "$cache/cri-tools-$crictl" sigs.k8s.io/cri-tools/cmd/crictl crictl \
		"-X sigs.k8s.io/cri-tools/pkg/version.Version=$crictl"
	for p in ipam/host-local main/loopback main/ptp meta/portmap; do
		build cni-plugins "$cache/cni-plugins-$cni" "github.com/containernetworking/plugins/plugins/$p" "${p#*/}" ""
	done
	build local-path-provisioner "$cache/local-path-provisioner-$lpp" github.com/rancher/local-path-provisioner \
		local-path-provisioner ""
}

argocd() {
	local argocd
	# argo-cd's go directive asks for Go 1.27: the wrapper's toolchain line names it, and Go fetches
	# it from the module proxy when GOTOOLCHAIN allows (`local` otherwise refuses).
	export GOTOOLCHAIN=auto
	argocd=$(version_of argocd github.com/argoproj/argo-cd/v3)
	download argocd
	# One binary for every component: cmd/main.go picks one by the name it is run as
	# (argocd-application-controller, argocd-repo-server, ...). Upstream's Makefile sets these.
	build argocd "$cache/argocd-$argocd" github.com/argoproj/argo-cd/v3/cmd argocd \
		"-X github.com/argoproj/argo-cd/v3/common.version=${argocd#v} -X github.com/argoproj/argo-cd/v3/common.gitTag=$argocd -X github.com/argoproj/argo-cd/v3/common.gitTreeState=clean"
	unset GOTOOLCHAIN
}

for s in "${sets[@]}"; do
	"$s"
done
exit $missing
