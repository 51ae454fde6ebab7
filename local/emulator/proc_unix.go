//go:build unix

package emulator

import (
	"os/exec"
	"syscall"
)

// setProcessGroup makes the command the leader of a new process group, so a
// terminal's SIGINT does not reach it and Close can signal the whole group.
func setProcessGroup(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	setDeathSignal(cmd.SysProcAttr)
}

func termGroup(pgid int) error { return syscall.Kill(-pgid, syscall.SIGTERM) }
func killGroup(pgid int) error { return syscall.Kill(-pgid, syscall.SIGKILL) }
