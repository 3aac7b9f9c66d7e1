// Package logging builds the slog JSON logger every service uses, with
// personal data (emails, phones, names, addresses) redacted, carries the
// logger on a context, and bounds free text for logs and messages
// (Truncate).
package logging

import (
	"context"
	"io"
	"log/slog"
	"regexp"
	"strings"
)

// Redacted replaces a value that may hold personal data.
const Redacted = "[redacted]"

// Options configure New.
type Options struct {
	Level slog.Leveler
	// LogPII turns redaction off. Only for a developer's own machine.
	LogPII bool
}

// piiKeys are attribute keys whose values are personal data, whatever they hold.
var piiKeys = map[string]bool{
	"email": true, "emails": true, "phone": true, "phones": true, "mobile_phone": true,
	"home_phone": true, "raw_phone": true, "first_name": true, "last_name": true,
	"full_name": true, "name": true, "address": true, "unparsed_address": true,
	"message": false, // the log line's own message is not an attribute
}

var (
	emailRe = regexp.MustCompile(`[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}`)
	// Phone numbers: international (+ and 7 to 15 digits, with the usual
	// separators) or North American (415 555 0134, (415) 555-0134). Dates,
	// IP addresses and ids do not have these shapes.
	phoneRe = regexp.MustCompile(`\+\d[\d\s().\-]{5,18}\d|\(?\b\d{3}\)?[\s.\-]?\d{3}[\s.\-]\d{4}\b`)
)

// New returns a JSON logger writing to w.
func New(w io.Writer, opts Options) *slog.Logger {
	ho := &slog.HandlerOptions{Level: opts.Level}
	if !opts.LogPII {
		ho.ReplaceAttr = redact
	}
	return slog.New(slog.NewJSONHandler(w, ho))
}

// IsPIIKey reports whether a field or attribute named key holds personal
// data whatever its value (email, phone, names, address), as the logger
// redacts it. The alerter redacts the data of a failed message with it.
func IsPIIKey(key string) bool { return piiKeys[strings.ToLower(key)] }

// RedactString removes emails and phone numbers from free text.
func RedactString(s string) string {
	s = emailRe.ReplaceAllString(s, Redacted)
	return phoneRe.ReplaceAllString(s, Redacted)
}

func redact(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey || a.Key == slog.SourceKey) {
		return a
	}
	if piiKeys[strings.ToLower(a.Key)] {
		return slog.String(a.Key, Redacted)
	}
	switch a.Value.Kind() {
	case slog.KindString:
		if s := a.Value.String(); s != "" {
			return slog.String(a.Key, RedactString(s))
		}
	case slog.KindAny:
		if err, ok := a.Value.Any().(error); ok {
			return slog.String(a.Key, RedactString(err.Error()))
		}
	}
	return a
}

type ctxKey struct{}

// WithLogger returns ctx carrying l.
func WithLogger(ctx context.Context, l *slog.Logger) context.Context {
	return context.WithValue(ctx, ctxKey{}, l)
}

// FromContext returns the logger on ctx, or slog.Default().
func FromContext(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(ctxKey{}).(*slog.Logger); ok {
		return l
	}
	return slog.Default()
}

// Truncate returns s cut to at most n bytes, on a rune boundary: a
// multi-byte character that does not fit is dropped whole, never cut in
// half, so the result is valid UTF-8 when s is. It bounds free text from
// outside (a vendor's error body, an error kept as a reason) before it goes
// into a log line, an error or a message.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	end := 0
	for i := range s { // i is where each rune starts
		if i > n {
			break
		}
		end = i
	}
	return s[:end]
}
