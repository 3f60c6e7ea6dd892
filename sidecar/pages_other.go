//go:build !linux

package sidecar

// dropStartupPages does nothing outside Linux (see pages_linux.go).
func dropStartupPages() error { return nil }
