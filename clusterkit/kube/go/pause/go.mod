module mnist-serve/kube/pause

go 1.24.0
