package emulator

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
)

// EnvSkip set to 1 makes ForTest skip the test instead of starting emulators.
const EnvSkip = "CMS_SKIP_EMULATORS"

// One stack per test binary: `go test ./...` runs each package's test binary
// as its own process, so each package that uses ForTest gets its own
// emulators on its own ports, started on first use and shared by all the
// tests of that package.
var shared struct {
	mu     sync.Mutex
	inMain bool
	setup  func(*Stack) error

	once  sync.Once
	stack *Stack
	err   error
}

// Main runs a package's tests and stops the emulators afterwards. Call it
// from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(emulator.Main(m, nil)) }
//
// The emulators start lazily, on the first ForTest call (a run whose tests
// never call ForTest starts nothing). setup, if not nil, runs once right
// after they start, e.g. to create tables; its error fails every ForTest.
// A test binary that panics or times out skips the cleanup; on Linux the
// kernel then kills the emulators with it (see the package documentation).
func Main(m *testing.M, setup func(*Stack) error) int {
	shared.mu.Lock()
	shared.inMain = true
	shared.setup = setup
	shared.mu.Unlock()

	code := m.Run()

	shared.mu.Lock()
	s := shared.stack
	shared.mu.Unlock()
	if err := s.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "emulator: closing the test stack: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// ForTest returns the test binary's shared Stack, starting it on first use.
// It needs TestMain to call Main (which stops the stack after the last
// test); it skips the test under `go test -short` and when CMS_SKIP_EMULATORS=1.
// Tests sharing the stack should use their own table, queue and bucket names
// (DynamoDB Local runs with -sharedDb: every credential and region sees the
// same tables).
func ForTest(tb testing.TB) *Stack {
	tb.Helper()
	if os.Getenv(EnvSkip) == "1" {
		tb.Skipf("emulator: %s=1", EnvSkip)
	}
	if testing.Short() {
		tb.Skip("emulator: skipped in -short mode")
	}
	shared.mu.Lock()
	inMain := shared.inMain
	shared.mu.Unlock()
	if !inMain {
		tb.Fatal("emulator.ForTest needs the package's TestMain to call emulator.Main:\n" +
			"\tfunc TestMain(m *testing.M) { os.Exit(emulator.Main(m, nil)) }")
	}
	shared.once.Do(func() {
		s, err := Start(context.Background(), Options{})
		if err == nil && shared.setup != nil {
			if err = shared.setup(s); err != nil {
				err = fmt.Errorf("emulator: setup: %w", err)
			}
		}
		shared.mu.Lock()
		shared.stack, shared.err = s, err
		shared.mu.Unlock()
	})
	shared.mu.Lock()
	s, err := shared.stack, shared.err
	shared.mu.Unlock()
	if err != nil {
		tb.Fatalf("emulator: %v", err)
	}
	return s
}
