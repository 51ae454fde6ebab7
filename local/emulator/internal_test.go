package emulator

import (
	"strings"
	"testing"
)

func TestModuleOf(t *testing.T) {
	for in, want := range map[string]string{
		"module github.com/channelbilling/cms\n\ngo 1.26\n": "github.com/channelbilling/cms",
		"// x\nmodule \"example.com/a\"\n":                  "example.com/a",
		"modulex foo\n":                                     "",
		"go 1.26\n":                                         "",
	} {
		if got := moduleOf([]byte(in)); got != want {
			t.Errorf("moduleOf(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTailBuffer(t *testing.T) {
	var b tailBuffer
	if got := b.Tail(3); got != "    (no output)" {
		t.Errorf("empty tail %q", got)
	}
	b.Write([]byte("one\ntwo\nthree\nfour\n"))
	if got := b.Tail(2); got != "    three\n    four" {
		t.Errorf("tail %q", got)
	}
	b.Write([]byte(strings.Repeat("x", tailMax+10)))
	if n := len(b.String()); n != tailMax {
		t.Errorf("buffer holds %d bytes, want %d", n, tailMax)
	}
}

func TestLostPort(t *testing.T) {
	p := &process{out: &tailBuffer{}}
	p.out.Write([]byte("java.io.IOException: Failed to bind to 0.0.0.0/0.0.0.0:18002\n"))
	if !p.lostPort() {
		t.Error("Jetty's bind failure not recognised")
	}
	p = &process{out: &tailBuffer{}}
	p.out.Write([]byte("OSError: [Errno 98] Address already in use\n"))
	if !p.lostPort() {
		t.Error("werkzeug's bind failure not recognised")
	}
}
