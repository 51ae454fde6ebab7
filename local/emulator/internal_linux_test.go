package emulator

import (
	"net"
	"os"
	"syscall"
	"testing"
)

func TestListensOn(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	if !listensOn(os.Getpid(), port) {
		t.Errorf("listensOn(self, %d) = false", port)
	}
	other, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	if listensOn(os.Getpid(), other) {
		t.Errorf("listensOn(self, %d) = true for a closed port", other)
	}
	if got := pgidOf(os.Getpid()); got != syscall.Getpgrp() {
		t.Errorf("pgidOf(self) = %d, want %d", got, syscall.Getpgrp())
	}
}
