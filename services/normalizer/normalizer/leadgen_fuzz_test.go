package normalizer

import (
	"errors"
	"testing"
)

// FuzzDecodeLeadgen: a Facebook leadgen notification is outside input. It
// must never panic, and every change it returns names a lead to read.
func FuzzDecodeLeadgen(f *testing.F) {
	f.Add([]byte(`{"object":"page","entry":[{"id":"1","time":1447342027,"changes":[{"field":"leadgen","value":{"ad_id":444,"form_id":555,"leadgen_id":"4471111","created_time":1447342026,"page_id":"1","adgroup_id":666}}]}]}`))
	f.Add([]byte(`{"object":"page","entry":[]}`))
	f.Add([]byte(`{"object":"user"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		changes, err := decodeLeadgen(body)
		if err != nil {
			var me *MappingError
			if !errors.As(err, &me) {
				t.Fatalf("error %T is not a MappingError: %v", err, err)
			}
			return
		}
		if len(changes) == 0 {
			t.Fatal("no error and no change")
		}
		for _, c := range changes {
			if c["leadgen_id"] == "" {
				t.Fatalf("a change without leadgen_id: %v", c)
			}
		}
	})
}
