//go:build tools

// Package tools pins the commands built from the upstream module(s).
package tools

import (
	_ "github.com/argoproj/argo-rollouts/cmd/rollouts-controller"
)
