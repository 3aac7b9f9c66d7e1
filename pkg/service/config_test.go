package service_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/brokerflow/brokerflow/pkg/service"
)

// TestSecrets_fromTheEnvironmentAndAFile: a Secret's key taken into the
// environment keeps its one value per line, as its mounted file does.
func TestSecrets_fromTheEnvironmentAndAFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(file, []byte("# rotated on Monday\nfile-new\n\nfile-old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := service.Secrets([]string{" env-a ", "env-new\nenv-old\n", ""}, file)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"env-a", "env-new", "env-old", "file-new", "file-old"}; !slices.Equal(got, want) {
		t.Fatalf("secrets = %q, want %q", got, want)
	}
	if _, err := service.Secrets(nil, filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("a secrets file that does not exist is not an error")
	}
}
