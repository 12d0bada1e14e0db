package regtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"
)

// btcdModule is the module whose main package is the node the tests run.
const btcdModule = "github.com/btcsuite/btcd"

// EnvBtcd names an environment variable that, when set, points at a btcd
// binary to use instead of building one (for CI images that ship it).
const EnvBtcd = "SV2KIT_BTCD"

// BuildBtcd returns the path of a btcd binary built from the module cache at
// the version this repository's go.mod pins, building it when it is missing.
//
// The binary is cached in <repo>/.cache/btcd/<version>/btcd, where <repo> is
// the nearest directory above the working directory that holds a go.mod.
// Concurrent callers (parallel test packages are separate processes) are
// serialised with an exclusive flock on a lock file beside the binary, so the
// binary is built once. btcd v0.24.2 does not compile against the btcec
// version our go.mod selects, so it is built in its own module context (the
// module's directory in the module cache, -mod=mod), which fetches btcd's own
// dependencies through the module proxy the first time.
//
// When the environment variable SV2KIT_BTCD is set, its value is returned
// as is (after checking that the file exists).
func BuildBtcd(ctx context.Context) (string, error) {
	if p := os.Getenv(EnvBtcd); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("regtest: %s: %w", EnvBtcd, err)
		}
		return p, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	goBin, err := goTool()
	if err != nil {
		return "", err
	}

	// Fast path: the version linked into this binary names the cache entry,
	// so a cached btcd costs one stat and no `go` invocation.
	if v := linkedBtcdVersion(); v != "" {
		bin := filepath.Join(root, ".cache", "btcd", v, "btcd")
		if isExecutable(bin) {
			return bin, nil
		}
	}

	version, modDir, err := pinnedBtcd(ctx, goBin, root)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, ".cache", "btcd", version)
	bin := filepath.Join(dir, "btcd")
	if isExecutable(bin) {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("regtest: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(dir, ".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if isExecutable(bin) { // built by another process while we waited
		return bin, nil
	}

	tmp := bin + ".tmp"
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", tmp, ".")
	cmd.Dir = modDir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod -buildvcs=false", "GOWORK=off")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("regtest: building btcd %s in %s: %w\n%s", version, modDir, err, out.String())
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", fmt.Errorf("regtest: %w", err)
	}
	return bin, nil
}

// repoRoot walks up from the working directory to the nearest go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("regtest: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("regtest: no go.mod above the working directory; run from inside the repository or set " + EnvBtcd)
		}
		dir = parent
	}
}

// goTool finds the go command: $PATH first, then $GOROOT/bin.
func goTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	if r := os.Getenv("GOROOT"); r != "" {
		p := filepath.Join(r, "bin", "go")
		if isExecutable(p) {
			return p, nil
		}
	}
	return "", errors.New("regtest: the go command is needed to build btcd and is not on PATH")
}

// linkedBtcdVersion is the btcd module version compiled into this binary
// (rpcclient is part of that module), or "" when unknown or replaced.
func linkedBtcdVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, d := range info.Deps {
		if d.Path == btcdModule && d.Replace == nil {
			return d.Version
		}
	}
	return ""
}

// pinnedBtcd asks the go command for the version go.mod selects and the
// module's directory in the module cache, downloading it when absent.
func pinnedBtcd(ctx context.Context, goBin, root string) (version, dir string, err error) {
	list := func() (string, string, error) {
		cmd := exec.CommandContext(ctx, goBin, "list", "-m", "-f", "{{.Version}}|{{.Dir}}", btcdModule)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOWORK=off")
		out, err := cmd.Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return "", "", fmt.Errorf("regtest: go list -m %s: %w\n%s", btcdModule, err, ee.Stderr)
			}
			return "", "", fmt.Errorf("regtest: go list -m %s: %w", btcdModule, err)
		}
		v, d, _ := strings.Cut(strings.TrimSpace(string(out)), "|")
		return v, d, nil
	}
	version, dir, err = list()
	if err != nil {
		return "", "", err
	}
	if version == "" {
		return "", "", fmt.Errorf("regtest: go.mod in %s does not require %s", root, btcdModule)
	}
	if dir == "" {
		cmd := exec.CommandContext(ctx, goBin, "mod", "download", btcdModule)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("regtest: go mod download %s: %w\n%s", btcdModule, err, out)
		}
		if version, dir, err = list(); err != nil {
			return "", "", err
		}
		if dir == "" {
			return "", "", fmt.Errorf("regtest: %s@%s is not in the module cache after download", btcdModule, version)
		}
	}
	return version, dir, nil
}

// lockFile takes an exclusive flock on path, polling so that ctx can cancel
// the wait. The returned function releases it.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("regtest: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				_ = f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			_ = f.Close()
			return nil, fmt.Errorf("regtest: flock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("regtest: waiting for the btcd build lock: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 && st.Size() > 0
}
