// Package logtest helps tests read what a service logged.
package logtest

import (
	"bytes"
	"sync"
)

// Buffer collects log output written from many goroutines (a service's
// handlers and replicas), for a test to read.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String is everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
