//go:build tools

// Package tools pins the commands built from the upstream module(s).
package tools

import (
	_ "github.com/fluxcd/source-controller"
	_ "github.com/fluxcd/kustomize-controller"
)
