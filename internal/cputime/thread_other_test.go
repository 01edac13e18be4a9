//go:build !linux

package cputime

const thread = false
