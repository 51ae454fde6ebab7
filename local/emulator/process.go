package emulator

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// launchSpec says how to start one emulator and how to tell it answers.
type launchSpec struct {
	name  string
	path  string
	args  func(port int) []string
	dir   string
	env   []string
	probe func(ctx context.Context, baseURL string) bool
}

// process is one running emulator: the leader of its own process group.
type process struct {
	name string
	cmd  *exec.Cmd
	port int
	out  *tailBuffer
	done chan struct{} // closed when cmd.Wait has returned
	err  error         // cmd.Wait's result, once done is closed

	mu      sync.Mutex
	stopped bool // Close asked it to stop
}

const maxAttempts = 3

// launch starts sp on a free loopback port and waits until it answers. A
// start that loses its port to another process (the port is chosen before
// the emulator binds it) is retried on a new port.
func launch(ctx context.Context, sp launchSpec, timeout time.Duration, logw io.Writer) (*process, string, error) {
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, "", fmt.Errorf("emulator: %s: no free port: %w", sp.name, err)
		}
		t0 := time.Now()
		p, err := startProcess(sp, port)
		if err != nil {
			return nil, "", err
		}
		url := "http://127.0.0.1:" + strconv.Itoa(port)
		err = p.waitReady(ctx, sp, url, timeout)
		if err == nil {
			fmt.Fprintf(logw, "emulator: %s answered on %s after %.1fs (pid %d)\n", sp.name, url, time.Since(t0).Seconds(), p.cmd.Process.Pid)
			return p, url, nil
		}
		_ = p.stop(time.Second)
		if attempt >= maxAttempts || !p.lostPort() || ctx.Err() != nil {
			return nil, "", err
		}
		fmt.Fprintf(logw, "emulator: %s could not bind port %d; retrying on another port\n", sp.name, port)
	}
}

func startProcess(sp launchSpec, port int) (*process, error) {
	cmd := exec.Command(sp.path, sp.args(port)...)
	cmd.Dir = sp.dir
	cmd.Env = append(os.Environ(), sp.env...)
	out := &tailBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 2 * time.Second // a grandchild holding the output pipe cannot block Wait
	setProcessGroup(cmd)
	if err := startCmd(cmd); err != nil {
		return nil, fmt.Errorf("emulator: start %s: %w", sp.name, err)
	}
	p := &process{name: sp.name, cmd: cmd, port: port, out: out, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *process) waitReady(ctx context.Context, sp launchSpec, url string, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		// Ask only once our own process listens on the port: another
		// emulator may hold it (two test binaries may pick the same port).
		if listensOn(p.cmd.Process.Pid, p.port) && sp.probe(ctx, url) {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("emulator: %s exited before it answered (%v); last output:\n%s", p.name, p.err, p.out.Tail(25))
		case <-ctx.Done():
			return fmt.Errorf("emulator: waiting for %s: %w; last output:\n%s", p.name, ctx.Err(), p.out.Tail(25))
		case <-deadline.C:
			return fmt.Errorf("emulator: %s did not answer on %s within %s; last output:\n%s", p.name, url, timeout, p.out.Tail(25))
		case <-tick.C:
		}
	}
}

// lostPort tells whether the process failed because its port was taken.
func (p *process) lostPort() bool {
	s := strings.ToLower(p.out.String())
	return strings.Contains(s, "address already in use") || strings.Contains(s, "failed to bind")
}

// stop ends the process group: SIGTERM, then SIGKILL after grace. It
// reports a process that had exited before stop was called.
func (p *process) stop(grace time.Duration) error {
	p.mu.Lock()
	already := p.stopped
	p.stopped = true
	p.mu.Unlock()
	if already {
		return nil
	}
	pid := p.cmd.Process.Pid
	select {
	case <-p.done:
		killGroup(pid) // stragglers of the group, if any
		return fmt.Errorf("emulator: %s (pid %d) had exited (%v); last output:\n%s", p.name, pid, p.err, p.out.Tail(25))
	default:
	}
	_ = termGroup(pid)
	select {
	case <-p.done:
	case <-time.After(grace):
	}
	killGroup(pid) // whatever is left, leader or not
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("emulator: %s (pid %d) did not exit after SIGKILL", p.name, pid)
	}
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ---------------------------------------------------------------- the two emulators

func dynamoDBLocalSpec(inst *installation) launchSpec {
	java := "java"
	if home := os.Getenv("JAVA_HOME"); home != "" {
		if p := filepath.Join(home, "bin", "java"); isExecutable(p) {
			java = p
		}
	}
	if p, err := exec.LookPath(java); err == nil {
		java = p
	}
	native := filepath.Join(inst.dynamoDBDir, "native")
	jvm := []string{"-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"}
	if v := strings.Fields(os.Getenv(EnvJavaOpts)); len(v) > 0 {
		jvm = v
	}
	jvm = append(jvm, "-Djava.library.path="+native)
	// DynamoDB Local 3.x loads <org.sqlite.lib.path>/libsqlite4java.so when set;
	// without it, it extracts a copy into java.io.tmpdir on every start.
	if dir := filepath.Join(native, runtime.GOOS+"-"+runtime.GOARCH); isDir(dir) {
		jvm = append(jvm, "-Dorg.sqlite.lib.path="+dir)
	}
	classpath := filepath.Join(inst.dynamoDBDir, "lib") + string(filepath.Separator) + "*"
	return launchSpec{
		name: "DynamoDB Local",
		path: java,
		// DynamoDB Local has no bind-address option: it listens on all interfaces.
		args: func(port int) []string {
			return append(append([]string{}, jvm...),
				"-cp", classpath, inst.mainClass,
				"-inMemory", "-sharedDb", "-disableTelemetry", "-port", strconv.Itoa(port))
		},
		// DynamoDB Local writes a metadata file into its working directory.
		dir:   filepath.Join(inst.dynamoDBDir, "run"),
		probe: probeDynamoDB,
	}
}

func motoSpec(inst *installation) launchSpec {
	return launchSpec{
		name: "moto",
		path: filepath.Join(inst.motoDir, "bin", "moto_server"),
		args: func(port int) []string {
			return []string{"-H", "127.0.0.1", "-p", strconv.Itoa(port)}
		},
		dir:   inst.motoDir,
		env:   []string{"PYTHONUNBUFFERED=1"},
		probe: probeMoto,
	}
}

var probeClient = &http.Client{
	Timeout:   2 * time.Second,
	Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
}

// probeDynamoDB sends an (unchecked) signed-looking ListTables.
func probeDynamoDB(ctx context.Context, baseURL string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/", strings.NewReader("{}"))
	if err != nil {
		return false
	}
	req.Header.Set("X-Amz-Target", "DynamoDB_20120810.ListTables")
	req.Header.Set("Content-Type", "application/x-amz-json-1.0")
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=test/20200101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0")
	body, code := do(req)
	return code == http.StatusOK && bytes.Contains(body, []byte("TableNames"))
}

func probeMoto(ctx context.Context, baseURL string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/moto-api/", nil)
	if err != nil {
		return false
	}
	_, code := do(req)
	return code == http.StatusOK
}

func do(req *http.Request) ([]byte, int) {
	resp, err := probeClient.Do(req)
	if err != nil {
		return nil, 0
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return body, resp.StatusCode
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// ---------------------------------------------------------------- output

// tailBuffer keeps the last 64 KiB written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

const tailMax = 64 << 10

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > tailMax {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailMax:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// Tail returns the last n lines, indented.
func (t *tailBuffer) Tail(n int) string {
	s := strings.TrimRight(t.String(), "\n")
	if s == "" {
		return "    (no output)"
	}
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + strings.Join(lines, "\n    ")
}
