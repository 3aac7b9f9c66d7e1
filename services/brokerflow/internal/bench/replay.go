package bench

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/pgtest"
	"github.com/brokerflow/brokerflow/pkg/service"
	crmv1 "github.com/brokerflow/brokerflow/proto/brokerflow/crm/v1"
	leadv1 "github.com/brokerflow/brokerflow/proto/brokerflow/lead/v1"
	"github.com/brokerflow/brokerflow/services/brokerflow/internal/app"
	"github.com/brokerflow/brokerflow/services/reporting/reporting"
)

// Replay measures the rebuild of the reporting read model from o.ReplayEvents
// events in LEADS and CRM, against, in the same run, the raw rate of an
// ordered consumer reading the same streams (the broker's pace, nothing
// decoded or written) and a plain bulk insert of one row per event (the
// database's pace, nothing read or derived; into PostgreSQL, with COPY):
// into SQLite, then into a PostgreSQL that it starts from the operating
// system's package (pgtest; fsync on, as in production).
func Replay(ctx context.Context, o Options, w io.Writer) error {
	dir, err := os.MkdirTemp("", "brokerflow-bench-replay-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ns, err := app.StartEmbedded(app.EmbeddedOptions{Host: "127.0.0.1", Port: -1, StoreDir: filepath.Join(dir, "nats"), Sync: app.SyncPolicy{Interval: 2 * time.Minute}})
	if err != nil {
		return err
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	nc, err := nats.Connect(ns.ClientURL(), nats.InProcessServer(ns))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return err
	}
	if err := bus.Apply(ctx, js, service.TopologyConfig{Replicas: 1, DuplicateWindow: time.Hour, AckWait: 30 * time.Second}.Topology()); err != nil {
		return err
	}
	n, err := publishSynthetic(ctx, js, o.ReplayEvents)
	if err != nil {
		return err
	}

	// The fastest of three reads: one read takes well under a second, and
	// on a shared machine a single one swings several times over with the
	// other jobs; the fastest is the broker's pace, so the ratio is the
	// rebuild's cost against it, not against a slow moment.
	var raw float64
	for range 3 {
		r, err := rawConsume(ctx, js, n)
		if err != nil {
			return fmt.Errorf("raw consume: %w", err)
		}
		raw = max(raw, r)
	}
	rows, err := eventRows(ctx, js)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "bench: replay_events %d count\n", n)
	fmt.Fprintf(w, "bench: replay_raw_consume_per_s %.0f events/s\n", raw)
	if load, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Fprintf(w, "# load average before the rebuilds: %s\n", strings.Join(strings.Fields(string(load))[:3], " "))
	}

	sqlite := reporting.SQLiteDir(dir)
	bulkDB, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "bulk.db")+"?_pragma=journal_mode(WAL)&_pragma=synchronous(OFF)&_pragma=cache_size(-65536)")
	if err != nil {
		return err
	}
	defer bulkDB.Close()
	sqliteBulk := func(ctx context.Context, rows []eventRow) (float64, error) { return bulkInsert(ctx, bulkDB, rows) }
	if err := replayInto(ctx, js, w, "replay", sqlite, "replay.db", sqliteBulk, rows, raw); err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}

	pg, err := pgtest.Start(ctx, pgtest.Options{Durable: true})
	if err != nil {
		fmt.Fprintf(w, "# replay_postgres_*: not measured: %v\n", err)
		return nil
	}
	defer func() { _ = pg.Stop() }()
	place, err := reporting.PostgreSQL(ctx, pg.DSN(""))
	if err != nil {
		return err
	}
	defer place.Close()
	pgBulk := func(ctx context.Context, rows []eventRow) (float64, error) { return bulkCopy(ctx, pg.DSN(""), rows) }
	if err := replayInto(ctx, js, w, "replay_postgres", place, "replay", pgBulk, rows, raw); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return nil
}

// replayInto rebuilds the read model in p three times (as name, then
// name-2 and name-3), then bulk-inserts rows with bulk, and prints the
// figures under prefix. The rate is the fastest of the three rebuilds, as
// the raw read's is the fastest of three reads: the same estimate on both
// sides of the ratio, each rebuild's own rate printed beside it.
func replayInto(ctx context.Context, js jetstream.JetStream, w io.Writer, prefix string, p reporting.Place, name string,
	bulk func(context.Context, []eventRow) (float64, error), rows []eventRow, raw float64,
) error {
	var rates []string
	best := 0.0
	for i := range 3 {
		n := name
		if i > 0 {
			base, ext, _ := strings.Cut(name, ".")
			n = fmt.Sprintf("%s_%d", base, i+1)
			if ext != "" {
				n += "." + ext
			}
		}
		res, err := reporting.Rebuild(ctx, js, p, n, reporting.ReplayOptions{})
		if err != nil {
			return fmt.Errorf("replay: %w", err)
		}
		if res.Read != len(rows) {
			return fmt.Errorf("replay read %d of %d events", res.Read, len(rows))
		}
		rates = append(rates, fmt.Sprintf("%.0f", res.Rate()))
		best = max(best, res.Rate())
	}
	ceiling, err := bulk(ctx, rows)
	if err != nil {
		return fmt.Errorf("bulk insert: %w", err)
	}
	fmt.Fprintf(w, "# %s: the three rebuilds' rates: %s events/s\n", prefix, strings.Join(rates, ", "))
	fmt.Fprintf(w, "bench: %s_events_per_s %.0f events/s\n", prefix, best)
	fmt.Fprintf(w, "bench: %s_ratio %.3f x\n", prefix, best/raw)
	fmt.Fprintf(w, "bench: %s_bulk_insert_per_s %.0f rows/s\n", prefix, ceiling)
	fmt.Fprintf(w, "bench: %s_vs_bulk_insert_ratio %.3f x\n", prefix, best/ceiling)
	return nil
}

// publishSynthetic stores about n events as the services would: leads
// (one in twenty rejected), a ContactSynced for each usable one, on 20,000
// people, so most contacts come back, and a stage change for one lead in five.
func publishSynthetic(ctx context.Context, js jetstream.JetStream, n int) (int, error) {
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	sent := 0
	publish := func(subject, id string, m proto.Message) error {
		data, err := proto.Marshal(m)
		if err != nil {
			return err
		}
		h := nats.Header{}
		h.Set(bus.HeaderMsgID, id)
		h[bus.HeaderID] = []string{id}
		h[bus.HeaderType] = []string{string(m.ProtoReflect().Descriptor().FullName())}
		h.Set(bus.HeaderContentType, bus.ContentTypeProtobuf)
		msg := &nats.Msg{Subject: subject, Header: h, Data: data}
		if _, err := js.PublishMsgAsync(msg); errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			// A loaded machine: let the acknowledgements catch up, then go on.
			select {
			case <-js.PublishAsyncComplete():
			case <-ctx.Done():
				return ctx.Err()
			}
			_, err = js.PublishMsgAsync(msg)
			if err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
		sent++
		return nil
	}
	sources := []string{"idx", "zillow", "realtor", "facebook"}
	for i := 0; sent < n; i++ {
		id := fmt.Sprintf("ld_%024d", i)
		source := sources[i%len(sources)]
		at := t0.Add(time.Duration(i) * 10 * time.Second)
		contact := fmt.Sprintf("%d", 1+i%20000)
		var err error
		if i%20 == 19 {
			err = publish("lead.rejected."+source, "lead.rejected:"+id, &leadv1.LeadRejected{LeadId: id, LeadSource: source, Reason: "no email or phone",
				Partial: &leadv1.Lead{ReceivedAt: timestamppb.New(at)}})
		} else {
			err = publish("lead.normalized."+source, "lead.normalized:"+id, &leadv1.Lead{LeadId: id, LeadSource: source, ReceivedAt: timestamppb.New(at),
				Inquiry: &leadv1.Inquiry{Type: leadv1.InquiryType_INQUIRY_TYPE_BUY}})
			if err == nil && sent < n {
				err = publish("crm.contact.synced", "crm.contact.synced:"+id, &crmv1.ContactSynced{LeadId: id, ContactId: contact, Crm: "followupboss",
					LeadSource: source, Outcome: crmv1.SyncOutcome_SYNC_OUTCOME_EXISTING, SyncedAt: timestamppb.New(at.Add(time.Duration(1+i%90) * time.Second))})
			}
			if err == nil && i%5 == 0 && sent < n {
				err = publish("crm.contact.stage_changed", fmt.Sprintf("crm.contact.stage_changed:followupboss:%s:%d", contact, i), &crmv1.ContactStageChanged{
					ContactId: contact, Crm: "followupboss", OldStage: "Lead", NewStage: "Active Client", ActiveClient: true, ChangedAt: timestamppb.New(at.Add(time.Hour))})
			}
		}
		if err != nil {
			return sent, err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return sent, ctx.Err()
	case <-time.After(5 * time.Minute):
		return sent, errors.New("publish: not acknowledged in 5 minutes")
	}
	return sent, nil
}

// rawConsume reads every message of LEADS and CRM with an ordered consumer
// and does nothing with it: events per second.
func rawConsume(ctx context.Context, js jetstream.JetStream, n int) (float64, error) {
	start := time.Now()
	got := 0
	for _, stream := range []string{bus.StreamLeads, bus.StreamCRM} {
		st, err := js.Stream(ctx, stream)
		if err != nil {
			return 0, err
		}
		info, err := st.Info(ctx)
		if err != nil {
			return 0, err
		}
		c, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
		if err != nil {
			return 0, err
		}
		it, err := c.Messages(jetstream.PullMaxMessages(10000))
		if err != nil {
			return 0, err
		}
		for range info.State.Msgs {
			if _, err := it.Next(); err != nil {
				it.Stop()
				return 0, err
			}
			got++
		}
		it.Stop()
	}
	if got != n {
		return 0, fmt.Errorf("read %d of %d", got, n)
	}
	return float64(got) / time.Since(start).Seconds(), nil
}

// eventRow is one stored event, as the bulk insert writes it.
type eventRow struct {
	stream, subject, id string
	seq                 uint64
	data                []byte
}

// eventRows reads every event of LEADS and CRM.
func eventRows(ctx context.Context, js jetstream.JetStream) ([]eventRow, error) {
	var rows []eventRow
	for _, stream := range []string{bus.StreamLeads, bus.StreamCRM} {
		for _, m := range fetchAll(ctx, js, stream) {
			meta, err := m.Metadata()
			if err != nil {
				return nil, err
			}
			rows = append(rows, eventRow{stream, m.Subject(), m.Headers().Get(bus.HeaderMsgID), meta.Sequence.Stream, m.Data()})
		}
	}
	return rows, nil
}

// eventsTable is the bulk insert's table.
const eventsTable = `CREATE TABLE events (stream TEXT NOT NULL, seq BIGINT NOT NULL, subject TEXT NOT NULL, event_id TEXT NOT NULL, data %s, PRIMARY KEY (stream, seq))`

// bulkCopy writes the same rows as bulkInsert into PostgreSQL with COPY,
// its bulk insert, in one statement: rows per second.
func bulkCopy(ctx context.Context, dsn string, rows []eventRow) (float64, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, fmt.Sprintf(eventsTable, "BYTEA")); err != nil {
		return 0, err
	}
	start := time.Now()
	n, err := conn.CopyFrom(ctx, pgx.Identifier{"events"}, []string{"stream", "seq", "subject", "event_id", "data"},
		pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
			r := rows[i]
			return []any{r.stream, int64(r.seq), r.subject, r.id, r.data}, nil
		}))
	if err != nil {
		return 0, err
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// bulkInsert writes one plain row per event (its stream, sequence, subject,
// id and body) into a fresh SQLite table, in transactions of 5,000, with
// the rebuild's pragmas: rows per second. The rows were read before, so
// only the inserts are timed.
func bulkInsert(ctx context.Context, db *sql.DB, rows []eventRow) (float64, error) {
	if _, err := db.ExecContext(ctx, fmt.Sprintf(eventsTable, "BLOB")); err != nil {
		return 0, err
	}
	start := time.Now()
	for i := 0; i < len(rows); i += 5000 {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return 0, err
		}
		st, err := tx.PrepareContext(ctx, `INSERT INTO events (stream, seq, subject, event_id, data) VALUES ($1, $2, $3, $4, $5)`)
		if err != nil {
			_ = tx.Rollback()
			return 0, err
		}
		for _, r := range rows[i:min(i+5000, len(rows))] {
			if _, err := st.ExecContext(ctx, r.stream, int64(r.seq), r.subject, r.id, r.data); err != nil {
				_ = tx.Rollback()
				return 0, err
			}
		}
		if err := tx.Commit(); err != nil {
			return 0, err
		}
	}
	return float64(len(rows)) / time.Since(start).Seconds(), nil
}

func fetchAll(ctx context.Context, js jetstream.JetStream, stream string) []jetstream.Msg {
	c, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil
	}
	var out []jetstream.Msg
	for {
		b, err := c.FetchNoWait(10000)
		if err != nil {
			return out
		}
		k := 0
		for m := range b.Messages() {
			k++
			out = append(out, m)
		}
		if k == 0 {
			return out
		}
	}
}
