package sources_test

import (
	"errors"
	"io"
	"mime/multipart"
	"slices"
	"strings"
	"testing"

	"github.com/brokerflow/brokerflow/pkg/sources"
)

// formPart is one part of a multipart/form-data body with boundary xyz.
func formPart(name, value string) string {
	return "--xyz\r\nContent-Disposition: form-data; name=\"" + name + "\"\r\n\r\n" + value + "\r\n"
}

// TestWalkMultipart pins what the gateway accepts as a well-formed e-mail
// post and what the normalizer reads: one walk, so they cannot disagree.
func TestWalkMultipart(t *testing.T) {
	t.Parallel()
	const ct = "multipart/form-data; boundary=xyz"
	mail := formPart("from", "a@b.example") + formPart("subject", "New Contact")
	for _, tt := range []struct {
		name, contentType, body string
		parts                   []string // the form names each sees, when well-formed
		wantErr                 string
	}{
		{"two_parts", ct, mail + "--xyz--\r\n", []string{"from", "subject"}, ""},
		{"final_boundary_without_crlf", ct, mail + "--xyz--", []string{"from", "subject"}, ""},
		{"quoted_boundary", `multipart/form-data; boundary="a b"`, "--a b\r\n\r\nx\r\n--a b--", []string{""}, ""},
		{"unterminated_part_after_good_ones", ct, mail + "--xyz\r\nContent-Type: text/plain\r\n\r\nunterminated", nil, "EOF"},
		{"unterminated_last_part", ct, formPart("from", "a@b.example") + "--xyz\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nhello", nil, "EOF"},
		{"no_part", ct, "--xyz--", nil, "no part"},
		{"no_boundary_in_the_body", ct, "--nope\r\nnot a part", nil, "no part"},
		{"empty_body", ct, "", nil, "no part"},
		{"no_boundary_parameter", "multipart/form-data", mail + "--xyz--\r\n", nil, "not multipart/form-data with a boundary"},
		{"multipart_mixed", "multipart/mixed; boundary=xyz", mail + "--xyz--\r\n", nil, "not multipart/form-data with a boundary"},
		{"not_multipart", "application/json", `{"from":"a@b.example"}`, nil, "not multipart/form-data with a boundary"},
		{"unparsable_content_type", "multipart/form-data; boundary", mail + "--xyz--\r\n", nil, "not multipart/form-data with a boundary"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var seen []string
			err := sources.WalkMultipart([]byte(tt.body), tt.contentType, func(p *multipart.Part) error {
				seen = append(seen, p.FormName())
				return nil // never reads: the walk still reads every part to its end
			})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("WalkMultipart = %v, want an error containing %q", err, tt.wantErr)
				}
			} else if err != nil || !slices.Equal(seen, tt.parts) {
				t.Fatalf("WalkMultipart = %v, parts %q; want parts %q", err, seen, tt.parts)
			}
			// Without a callback (the gateway's check) the verdict is the same.
			if nilErr := sources.WalkMultipart([]byte(tt.body), tt.contentType, nil); (nilErr == nil) != (err == nil) {
				t.Fatalf("with a callback: %v; without: %v", err, nilErr)
			}
		})
	}
}

func TestWalkMultipart_stopsAtTheCallbacksError(t *testing.T) {
	t.Parallel()
	stop := errors.New("stop")
	body := formPart("from", "a@b.example") + formPart("subject", "x") + "--xyz--\r\n"
	calls := 0
	err := sources.WalkMultipart([]byte(body), "multipart/form-data; boundary=xyz", func(p *multipart.Part) error {
		calls++
		_, _ = io.ReadAll(p)
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("err = %v after %d calls, want stop after 1", err, calls)
	}
}

// TestMapper_emailMalformedMultipart: the normalizer rejects what the
// gateway would answer 400 to, even when the parts it reads came first.
func TestMapper_emailMalformedMultipart(t *testing.T) {
	t.Parallel()
	m := preset(t, "email")
	lead := formPart("from", "Zillow <noreply@zillow.com>") + formPart("subject", "New Contact") +
		formPart("text", "Name: Ada Lovelace\nEmail: ada@example.com\n")
	for _, tt := range []struct{ name, contentType, body string }{
		{"unterminated_part_after_the_lead", "multipart/form-data; boundary=xyz", lead + "--xyz\r\nContent-Type: text/plain\r\n\r\nunterminated"},
		{"multipart_mixed", "multipart/mixed; boundary=xyz", lead + "--xyz--\r\n"},
		{"no_part", "multipart/form-data; boundary=xyz", "--xyz--"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := m.Map([]byte(tt.body), tt.contentType)
			var me *sources.MappingError
			if !errors.As(err, &me) || !strings.Contains(me.Reason, "multipart/form-data") {
				t.Fatalf("Map = %v, %v; want a MappingError about multipart/form-data", got, err)
			}
			if sources.WalkMultipart([]byte(tt.body), tt.contentType, nil) == nil {
				t.Fatal("the gateway's check accepts the body")
			}
		})
	}
	if got, err := m.Map([]byte(lead+"--xyz--\r\n"), "multipart/form-data; boundary=xyz"); err != nil || len(got) != 1 || got[0]["email"] != "ada@example.com" {
		t.Fatalf("well-formed: Map = %v, %v", got, err)
	}
}
