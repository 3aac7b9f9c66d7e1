package app

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// pepperFile is where the all-in-one keeps crm-sync's identity pepper when
// CRMSYNC_IDENTITY_PEPPER(_FILE) is not set: in the data directory, beside
// the identity records it keys, generated on first start.
func (c Config) pepperFile() string { return filepath.Join(c.DataDir, "identity-pepper") }

// ensurePepper creates file with a new random pepper unless it exists.
func ensurePepper(file string) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return fmt.Errorf("identity pepper: %w", err)
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return fmt.Errorf("identity pepper: %w", err)
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("identity pepper: %w", err)
	}
	if _, err := fmt.Fprintf(f, "# crm-sync's identity pepper (docs/crm.md). Keep it with the data: the identity records are keyed by it.\n%s\n", hex.EncodeToString(secret)); err != nil {
		_ = f.Close()
		return fmt.Errorf("identity pepper: %w", err)
	}
	return f.Close()
}
