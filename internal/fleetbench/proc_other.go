//go:build !linux

package main

import (
	"errors"
	"os/exec"
)

// errNoProcfs reports that hub memory and CPU need Linux's /proc.
var errNoProcfs = errors.New("memory and CPU figures need /proc (Linux)")

func dieWithParent(*exec.Cmd) {}

func rssBytes(int) (int64, error) { return 0, errNoProcfs }

func cpuTicks(int) (int64, error) { return 0, errNoProcfs }

func loadAverage() string { return "?" }
