package alerter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brokerflow/brokerflow/pkg/bus"
)

// Keys of the alerts bucket:
//
//	msg.<stream>.<seq>          a failed message alerted on or counted (msgEntry);
//	                            in a group, "-r<n>" follows it after its nth good redrive
//	group.<group>               an alert group (group)
//	sent.<alert id>.<channel>   a channel that has an alert
//	check.<check>               a check that is firing (checkState)
//	index.groups                every group, for the summaries
const indexKey = "index.groups"

var errConflict = errors.New("alerts bucket: changed by someone else")

func msgKey(stream string, seq uint64) string {
	return "msg." + keySafe(stream) + "." + strconv.FormatUint(seq, 10)
}

// parseMsgKey reads a key msgKey made, with or without a round ("-r1").
func parseMsgKey(k string) (string, uint64, bool) {
	if i := strings.LastIndex(k, "-r"); i > 0 {
		k = k[:i]
	}
	rest, ok := strings.CutPrefix(k, "msg.")
	if !ok {
		return "", 0, false
	}
	i := strings.LastIndexByte(rest, '.')
	if i < 0 {
		return "", 0, false
	}
	seq, err := strconv.ParseUint(rest[i+1:], 10, 64)
	return rest[:i], seq, err == nil
}

// keySafe keeps the characters a KV key may hold ([-/_=.A-Za-z0-9]), and
// replaces the others with _.
func keySafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune("-/_=.", r):
			return r
		}
		return '_'
	}, s)
}

func readJSON[T any](ctx context.Context, kv jetstream.KeyValue, key string) (*T, error) {
	v, _, err := readJSONRev[T](ctx, kv, key)
	return v, err
}

// readJSONRev reads key; nil and revision 0 when it does not exist.
func readJSONRev[T any](ctx context.Context, kv jetstream.KeyValue, key string) (*T, uint64, error) {
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read %s: %w", key, err)
	}
	var v T
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		return nil, 0, fmt.Errorf("decode %s: %w", key, err)
	}
	return &v, e.Revision(), nil
}

// writeJSON writes v at key if key is still at rev (0: does not exist);
// errConflict when it is not.
func writeJSON(ctx context.Context, kv jetstream.KeyValue, key string, v any, rev uint64) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if rev == 0 {
		_, err = kv.Create(ctx, key, b)
	} else {
		_, err = kv.Update(ctx, key, b, rev)
	}
	if bus.Conflict(err) {
		return errConflict
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	return nil
}

func putJSON(ctx context.Context, kv jetstream.KeyValue, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, key, b); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	return nil
}

// updateGroup applies change to the group at gkey, again on a conflict.
func (a *Alerter) updateGroup(ctx context.Context, kv jetstream.KeyValue, gkey string, change func(*group)) error {
	for {
		g, rev, err := readJSONRev[group](ctx, kv, gkey)
		if err != nil {
			return err
		}
		if g == nil {
			return fmt.Errorf("group %s vanished", gkey)
		}
		change(g)
		if err := writeJSON(ctx, kv, gkey, g, rev); !errors.Is(err, errConflict) {
			return err
		}
	}
}

// index adds gkey to the list of groups the summaries go through.
func (a *Alerter) index(ctx context.Context, kv jetstream.KeyValue, gkey string) error {
	for {
		idx, rev, err := readJSONRev[[]string](ctx, kv, indexKey)
		if err != nil {
			return err
		}
		var list []string
		if idx != nil {
			list = *idx
		}
		if slices.Contains(list, gkey) {
			return nil
		}
		if err := writeJSON(ctx, kv, indexKey, append(list, gkey), rev); !errors.Is(err, errConflict) {
			return err
		}
	}
}
