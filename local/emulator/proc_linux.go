package emulator

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// setDeathSignal asks the kernel to SIGKILL the child when the thread that
// started it dies (PR_SET_PDEATHSIG). startCmd starts every child from one
// goroutine locked to its OS thread for the life of the process, so that
// thread dies only with the process.
func setDeathSignal(attr *syscall.SysProcAttr) { attr.Pdeathsig = syscall.SIGKILL }

type startRequest struct {
	cmd  *exec.Cmd
	errc chan error
}

var (
	starterOnce sync.Once
	starter     chan startRequest
)

func startCmd(cmd *exec.Cmd) error {
	starterOnce.Do(func() {
		starter = make(chan startRequest)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives as long as the process
			for req := range starter {
				req.errc <- req.cmd.Start()
			}
		}()
	})
	errc := make(chan error, 1)
	starter <- startRequest{cmd, errc}
	return <-errc
}

// listensOn tells whether process pid (or a member of its process group)
// holds a listening TCP socket on port, from /proc. When /proc cannot tell,
// it answers true and the caller relies on its HTTP probe alone.
func listensOn(pid, port int) bool {
	inodes, err := listeningInodes(port)
	if err != nil {
		return true
	}
	if len(inodes) == 0 {
		return false
	}
	owns, err := ownsSocket(pid, inodes)
	if err != nil {
		return true
	}
	if owns {
		return true
	}
	// A wrapper script may have started the server inside the group.
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil || n == pid || pgidOf(n) != pid {
			continue
		}
		if owns, _ := ownsSocket(n, inodes); owns {
			return true
		}
	}
	return false
}

// listeningInodes returns the socket inodes listening on port (IPv4 and IPv6).
func listeningInodes(port int) (map[string]bool, error) {
	inodes := map[string]bool{}
	var readErr error
	read := 0
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(f)
		if err != nil {
			readErr = err
			continue
		}
		read++
		for _, line := range strings.Split(string(data), "\n") {
			fields := strings.Fields(line)
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			if len(fields) < 10 || fields[3] != "0A" { // 0A: TCP_LISTEN
				continue
			}
			i := strings.LastIndexByte(fields[1], ':')
			if i < 0 {
				continue
			}
			if p, err := strconv.ParseUint(fields[1][i+1:], 16, 16); err == nil && int(p) == port {
				inodes[fields[9]] = true
			}
		}
	}
	if read == 0 {
		return nil, readErr
	}
	return inodes, nil
}

func ownsSocket(pid int, inodes map[string]bool) (bool, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		link, err := os.Readlink(dir + "/" + e.Name())
		if err != nil {
			continue
		}
		if inode, ok := strings.CutPrefix(link, "socket:["); ok && inodes[strings.TrimSuffix(inode, "]")] {
			return true, nil
		}
	}
	return false, nil
}

// pgidOf reads the process group of pid from /proc/<pid>/stat (-1 if unknown).
func pgidOf(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 3 {
		return -1
	}
	n, err := strconv.Atoi(f[2])
	if err != nil {
		return -1
	}
	return n
}
