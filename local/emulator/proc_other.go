//go:build !unix

package emulator

import (
	"errors"
	"os"
	"os/exec"
	"runtime"
)

var errUnsupported = errors.New("emulator: starting processes is not supported on " + runtime.GOOS + "; set AWS_ENDPOINT_URL")

// Without process groups (Windows) only ModeEndpoint and ModeAWS work.

func setProcessGroup(*exec.Cmd)    {}
func startCmd(*exec.Cmd) error     { return errUnsupported }
func listensOn(pid, port int) bool { return true }
func termGroup(pid int) error      { return killGroup(pid) }
func killGroup(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}
