//go:build unix && !linux

package emulator

import (
	"os/exec"
	"syscall"
)

// setDeathSignal: no PR_SET_PDEATHSIG outside Linux. Children of a Go process
// that dies without Close keep running there.
func setDeathSignal(*syscall.SysProcAttr) {}

func startCmd(cmd *exec.Cmd) error { return cmd.Start() }

// listensOn cannot tell outside Linux: the HTTP probe decides alone.
func listensOn(pid, port int) bool { return true }
