package logging

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestNew_redactsPersonalData(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		log      func(*slog.Logger)
		secret   string
		mustKeep string
	}{
		{"email_key", func(l *slog.Logger) { l.Info("lead", "email", "ada@example.com") }, "ada@example.com", `"email":"[redacted]"`},
		{"phone_key", func(l *slog.Logger) { l.Info("lead", "phone", "+14155550134") }, "4155550134", `"phone":"[redacted]"`},
		{"name_in_group", func(l *slog.Logger) { l.Info("lead", slog.Group("contact", "first_name", "Ada")) }, "Ada", `"first_name":"[redacted]"`},
		{"email_in_free_text", func(l *slog.Logger) { l.Info("lead", "reason", "no person for Ada@Example.com") }, "Example.com", "no person for [redacted]"},
		{"phone_in_error", func(l *slog.Logger) { l.Error("call", "err", errors.New("bad phone (415) 555-0134")) }, "555-0134", "bad phone [redacted]"},
		{"ids_untouched", func(l *slog.Logger) { l.Info("lead", "lead_id", "ld_3f2a", "sequence", 42) }, "", `"lead_id":"ld_3f2a"`},
		{"e164_in_text", func(l *slog.Logger) { l.Info("call", "reason", "no person with +14155550134") }, "4155550134", "no person with [redacted]"},
		{"ip_untouched", func(l *slog.Logger) { l.Info("req", "remote", "203.0.113.7:4321") }, "", `"remote":"203.0.113.7:4321"`},
		{"date_untouched", func(l *slog.Logger) { l.Info("req", "day", "2026-11-26") }, "", `"day":"2026-11-26"`},
		{"trace_id_untouched", func(l *slog.Logger) { l.Info("req", "trace_id", "47003681990d3eae2667c676150b6f74") }, "", `"trace_id":"47003681990d3eae2667c676150b6f74"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			tt.log(New(&buf, Options{}))
			out := buf.String()
			if tt.secret != "" && strings.Contains(out, tt.secret) {
				t.Errorf("log leaks %q: %s", tt.secret, out)
			}
			if !strings.Contains(out, tt.mustKeep) {
				t.Errorf("log lacks %q: %s", tt.mustKeep, out)
			}
		})
	}
}

func TestNew_logPIIKeepsValues(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	New(&buf, Options{LogPII: true}).Info("lead", "email", "ada@example.com")
	if !strings.Contains(buf.String(), "ada@example.com") {
		t.Fatalf("LogPII should keep the value: %s", buf.String())
	}
}
