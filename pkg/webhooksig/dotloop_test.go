package webhooksig_test

import (
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/pkg/webhooksig"
)

func TestDotloopSignature_Verify(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	body := []byte(`{"eventId":"evt_1","eventType":"LOOP_UPDATED","event":{"id":1,"profileId":2,"loopId":1}}`)
	ms := now.UnixMilli()
	header := func(sig string, ts int64) http.Header {
		h := http.Header{}
		if sig != "" {
			h.Set(webhooksig.HeaderDotloopSignature, sig)
		}
		if ts != 0 {
			h.Set(webhooksig.HeaderDotloopTimestamp, strconv.FormatInt(ts, 10))
		}
		return h
	}
	good := webhooksig.SignDotloop("new", ms, body, webhooksig.DotloopTimestampBody)
	for _, c := range []struct {
		name   string
		signed webhooksig.DotloopSigned
		h      http.Header
		want   error
		id     string
	}{
		{"valid_ms", "", header(good, ms), nil, "evt_1"},
		{"valid_seconds", "", header(webhooksig.SignDotloop("new", now.Unix(), body, webhooksig.DotloopTimestampBody), now.Unix()), nil, "evt_1"},
		{"valid_previous_key", "", header(webhooksig.SignDotloop("old", ms, body, webhooksig.DotloopTimestampBody), ms), nil, "evt_1"},
		{"body_only", webhooksig.DotloopBody, header(webhooksig.SignDotloop("new", ms, body, webhooksig.DotloopBody), ms), nil, "evt_1"},
		{"body_only_signature_for_the_other_scheme", "", header(webhooksig.SignDotloop("new", ms, body, webhooksig.DotloopBody), ms), webhooksig.ErrBadSignature, ""},
		{"wrong_key", "", header(webhooksig.SignDotloop("other", ms, body, webhooksig.DotloopTimestampBody), ms), webhooksig.ErrBadSignature, ""},
		{"timestamp_changed", "", header(good, ms+1), webhooksig.ErrBadSignature, ""},
		{"stale", "", header(webhooksig.SignDotloop("new", ms-int64(10*time.Minute/time.Millisecond), body, webhooksig.DotloopTimestampBody), ms-int64(10*time.Minute/time.Millisecond)), webhooksig.ErrStale, ""},
		{"missing_timestamp", "", header(good, 0), webhooksig.ErrMissingSignature, ""},
		{"missing_signature", "", header("", ms), webhooksig.ErrMissingSignature, ""},
		{"not_hex", "", header("zz", ms), webhooksig.ErrMalformed, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			v, err := webhooksig.NewDotloopSignature([]string{"new", "old"}, c.signed, 5*time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			id, err := v.WithClock(func() time.Time { return now }).Verify(c.h, body)
			if !errors.Is(err, c.want) || (c.want == nil && err != nil) || id != c.id {
				t.Fatalf("Verify = %q, %v; want %q, %v", id, err, c.id, c.want)
			}
		})
	}
	if _, err := webhooksig.NewDotloopSignature([]string{"k"}, "sha256", 0); err == nil {
		t.Fatal("an unknown signed content was accepted")
	}
}
