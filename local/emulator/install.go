package emulator

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

const (
	modulePath    = "github.com/channelbilling/cms"
	installScript = "local/scripts/install-emulators.sh"
)

// installation describes an installed emulator cache.
type installation struct {
	cacheDir        string
	dynamoDBDir     string // <cache>/dynamodb-local
	dynamoDBVersion string
	mainClass       string
	motoDir         string // <cache>/moto-venv
	motoVersion     string
}

// ensureInstalled finds the cache, runs the install script when the
// repository is at hand (it returns at once when everything is installed) and
// reads the markers the script leaves.
func ensureInstalled(ctx context.Context, cacheDir string, logw io.Writer) (*installation, error) {
	root, rootErr := repoRoot()
	if cacheDir == "" {
		cacheDir = os.Getenv(EnvCacheDir)
	}
	if cacheDir == "" {
		if rootErr != nil {
			return nil, fmt.Errorf("emulator: cannot place the cache: %w (run inside the repository or set %s)", rootErr, EnvCacheDir)
		}
		cacheDir = filepath.Join(root, ".cache")
	}
	cacheDir, err := filepath.Abs(cacheDir)
	if err != nil {
		return nil, err
	}

	if rootErr == nil {
		if err := runInstallScript(ctx, root, cacheDir, logw); err != nil {
			return nil, err
		}
	}
	inst, err := readInstallation(cacheDir)
	if err != nil {
		if rootErr != nil {
			return nil, fmt.Errorf("%w; and the install script cannot be run: %v", err, rootErr)
		}
		return nil, err
	}
	return inst, nil
}

// repoRoot returns the directory holding the go.mod of
// github.com/channelbilling/cms, walking up from the working directory.
func repoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; {
		if mod, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && moduleOf(mod) == modulePath {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of module %s in %s or above", modulePath, wd)
		}
		dir = parent
	}
}

func moduleOf(gomod []byte) string {
	sc := bufio.NewScanner(strings.NewReader(string(gomod)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "module"); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t') {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

// runInstallScript runs install-emulators.sh --quiet: silent when all is
// installed, progress lines on Log otherwise. Several test binaries may run it
// at once; the script serialises them with a lock.
func runInstallScript(ctx context.Context, root, cacheDir string, logw io.Writer) error {
	script := filepath.Join(root, filepath.FromSlash(installScript))
	if _, err := os.Stat(script); err != nil {
		return fmt.Errorf("emulator: install script: %w", err)
	}
	cmd := exec.CommandContext(ctx, "bash", script, "--quiet")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), EnvCacheDir+"="+cacheDir)
	var tail tailBuffer
	out := io.MultiWriter(logw, &tail)
	cmd.Stdout, cmd.Stderr = out, out
	setProcessGroup(cmd)
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid) } // mvn and pip too
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("emulator: installing the emulators: %w", ctx.Err())
		}
		return fmt.Errorf("emulator: %s failed (%v); last output:\n%s", installScript, err, tail.Tail(20))
	}
	return nil
}

func readInstallation(cacheDir string) (*installation, error) {
	inst := &installation{
		cacheDir:    cacheDir,
		dynamoDBDir: filepath.Join(cacheDir, "dynamodb-local"),
		motoDir:     filepath.Join(cacheDir, "moto-venv"),
	}
	ddb, err := readMarker(filepath.Join(inst.dynamoDBDir, ".installed"))
	if err != nil {
		return nil, notInstalled(cacheDir, err)
	}
	moto, err := readMarker(filepath.Join(inst.motoDir, ".installed"))
	if err != nil {
		return nil, notInstalled(cacheDir, err)
	}
	inst.dynamoDBVersion = ddb["version"]
	inst.mainClass = ddb["main_class"]
	if inst.mainClass == "" {
		inst.mainClass = "software.amazon.dynamodb.services.local.main.ServerRunner"
	}
	inst.motoVersion = moto["version"]
	return inst, nil
}

func notInstalled(cacheDir string, err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("emulator: emulators not installed in %s (run `make emulators`)", cacheDir)
	}
	return fmt.Errorf("emulator: %w", err)
}

// readMarker reads the key=value lines of a .installed file.
func readMarker(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			m[k] = v
		}
	}
	return m, nil
}
