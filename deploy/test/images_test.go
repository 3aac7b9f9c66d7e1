package deploytest

import (
	"bytes"
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Every service builds with scripts/build-service (the script the Dockerfile runs) into a
// static binary, which answers --help with exit 0 as the images' user, uid 65532.
func TestImageBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every service")
	}
	services := builtServices(t)
	for _, want := range []string{"brokerflow", "ingest-gateway", "normalizer", "crm-sync", "sandbox"} {
		if !slices.Contains(services, want) {
			t.Errorf("scripts/build-service --list misses %s: %v", want, services)
		}
	}
	// Readable and runnable by uid 65532: not t.TempDir, whose directories are 0700.
	out, err := os.MkdirTemp("", "brokerflow-images-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(out) })
	if err := os.Chmod(out, 0o755); err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, svc := range services {
		t.Run(svc, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
			defer cancel()
			build := exec.CommandContext(ctx, filepath.Join(root, "scripts", "build-service"), svc, out)
			// The script builds in the workspace; this module's GOWORK=off must not reach it.
			build.Env = withoutEnv(os.Environ(), "GOWORK", "GOFLAGS")
			if b, err := build.CombinedOutput(); err != nil {
				t.Fatalf("scripts/build-service %s: %v\n%s", svc, err, b)
			}
			bin := filepath.Join(out, svc)
			f, err := elf.Open(bin)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP {
					t.Errorf("%s has an ELF interpreter: not static (CGO_ENABLED=0?)", svc)
				}
			}
			if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
				t.Errorf("%s links %v dynamically", svc, libs)
			}
			if os.Geteuid() != 0 {
				t.Skip("not root: cannot run the binary as uid 65532; built and checked static only")
			}
			var stdout, stderr bytes.Buffer
			run := exec.CommandContext(ctx, bin, "--help")
			run.Dir = out
			run.Env = []string{"PATH=/nonexistent"}
			run.Stdout, run.Stderr = &stdout, &stderr
			run.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65532, Gid: 65532}}
			if err := run.Run(); err != nil {
				t.Fatalf("%s --help as uid 65532: %v\nstdout: %s\nstderr: %s", svc, err, stdout.String(), stderr.String())
			}
			if help := stdout.String() + stderr.String(); !strings.Contains(strings.ToLower(help), "usage") {
				t.Errorf("%s --help printed no usage:\n%s", svc, help)
			}
		})
	}
}

func withoutEnv(env []string, names ...string) []string {
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(names, k) {
			out = append(out, kv)
		}
	}
	return out
}
