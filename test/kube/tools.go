//go:build tools

// This file only pins k8s.io/kubernetes in this module so that
// `go build k8s.io/kubernetes/cmd/kube-apiserver` resolves here, away from
// the main module's go.mod.
package kube

import _ "k8s.io/kubernetes/cmd/kube-apiserver/app"
