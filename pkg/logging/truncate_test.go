package logging

import (
	"testing"
	"unicode/utf8"
)

func TestTruncate_cutsOnARuneBoundary(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		s    string
		n    int
		want string
	}{
		{"short_enough", "quota exceeded", 20, "quota exceeded"},
		{"exactly_n", "abcdef", 6, "abcdef"},
		{"ascii_cut", "abcdef", 4, "abcd"},
		{"empty", "", 3, ""},
		{"zero", "abc", 0, ""},
		{"negative", "abc", -1, ""},
		// "é" is 2 bytes, "€" 3, "😀" 4: a limit inside one drops it whole.
		{"two_byte_rune_at_the_limit", "café", 4, "caf"},
		{"two_byte_rune_fits", "café", 5, "café"},
		{"three_byte_rune_cut_after_one", "a€b", 2, "a"},
		{"three_byte_rune_cut_after_two", "a€b", 3, "a"},
		{"three_byte_rune_fits", "a€b", 4, "a€"},
		{"four_byte_rune_cut", "😀😀", 7, "😀"},
		{"only_a_rune_too_long", "😀", 3, ""},
		{"combining_mark_is_its_own_rune", "e\u0301x", 3, "e\u0301"},
		{"invalid_bytes_count_one_each", "ab\xff\xfecd", 3, "ab\xff"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := Truncate(tt.s, tt.n)
			if got != tt.want {
				t.Fatalf("Truncate(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.want)
			}
			if len(got) > max(tt.n, 0) && got != tt.s {
				t.Fatalf("Truncate(%q, %d) = %q: longer than %d bytes", tt.s, tt.n, got, tt.n)
			}
			if utf8.ValidString(tt.s) && !utf8.ValidString(got) {
				t.Fatalf("Truncate(%q, %d) = %q: not valid UTF-8", tt.s, tt.n, got)
			}
		})
	}
}

func FuzzTruncate(f *testing.F) {
	f.Add("café €uro 😀", 6)
	f.Add("ab\xff\xfecd", 3)
	f.Fuzz(func(t *testing.T, s string, n int) {
		got := Truncate(s, n)
		switch {
		case len(s) <= n && got != s:
			t.Fatalf("Truncate(%q, %d) = %q: s fits and must be kept", s, n, got)
		case len(s) > n && len(got) > max(n, 0):
			t.Fatalf("Truncate(%q, %d) = %q: longer than n", s, n, got)
		case got != s[:len(got)]:
			t.Fatalf("Truncate(%q, %d) = %q: not a prefix", s, n, got)
		case utf8.ValidString(s) && !utf8.ValidString(got):
			t.Fatalf("Truncate(%q, %d) = %q: cut a character in half", s, n, got)
		case len(s) > n && n >= utf8.UTFMax && len(got) <= n-utf8.UTFMax:
			t.Fatalf("Truncate(%q, %d) = %q: dropped more than one character", s, n, got)
		}
	})
}
