package cli

import (
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/services/reporting/reporting"
)

func replayCmd(environ []string, stdout io.Writer) *cobra.Command {
	var (
		nf             natsFlags
		dir, dsn, from string
		until          string
		fromSeq        []string
		batch          int
		noSwitch       bool
		wait           time.Duration
		o              reporting.ReplayOptions
	)
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "Rebuild the reporting read model from the streams into a fresh database, then switch to it",
		Long: `Read LEADS, CRM, TMS, LEDGER and REPORTING with ordered consumers into a new database in the
reporting data directory (or, with --dsn or $REPORTING_DATABASE_URL, a new schema of that
PostgreSQL database), printing progress and an ETA. A full rebuild becomes the database in use
once it is caught up (the running reporting service switches to it, catching up what it projected
meanwhile); a window (--from-time, --from-seq, --until) is left beside it for analysis.
Runs as the analyst by default, on the machine that holds the data directory. See docs/reporting.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m := service.EnvMap(environ)
			if dsn == "" {
				var err error
				if dsn, err = (reporting.Config{DatabaseURL: m[reporting.Prefix+"DATABASE_URL"], DatabaseURLFile: m[reporting.Prefix+"DATABASE_URL_FILE"]}).DSN(); err != nil {
					return err
				}
			}
			if dir == "" {
				dir = m[reporting.Prefix+"DATA_DIR"]
			}
			if dir == "" {
				data := m["BROKERFLOW_DATA_DIR"]
				if data == "" {
					data = ".brokerflow/data"
				}
				dir = filepath.Join(data, "reporting")
			}
			var err error
			if o.FromTime, err = parseTimeFlag("--from-time", from); err != nil {
				return err
			}
			if o.Until, err = parseTimeFlag("--until", until); err != nil {
				return err
			}
			if o.FromSeq, err = parseFromSeq(fromSeq); err != nil {
				return err
			}
			o.BatchSize, o.Progress = batch, stdout
			nc, js, err := nf.connect(environ)
			if err != nil {
				return err
			}
			defer nc.Close()
			ctx := cmd.Context()
			place, err := reporting.OpenPlace(ctx, dir, dsn)
			if err != nil {
				return err
			}
			defer place.Close()
			res, switched, err := reporting.Replay(ctx, js, place, o, noSwitch)
			if err != nil {
				return err
			}
			name := res.Name
			if !switched {
				fmt.Fprintf(stdout, "replay: wrote %s in %s (not switched to: %s)\n", name, place, map[bool]string{true: "a window of the streams", false: "--no-switch"}[o.Partial()])
				return nil
			}
			fmt.Fprintf(stdout, "replay: %s is now CURRENT in %s\n", name, place)
			if reporting.WaitLive(ctx, place, name, wait) {
				fmt.Fprintf(stdout, "replay: the reporting service switched to it and resumed from its last sequences\n")
			} else {
				fmt.Fprintf(stdout, "replay: no running reporting service took it within %s; it will at its next start\n", wait)
			}
			return nil
		},
	}
	nf.register(cmd, bus.UserAnalyst)
	f := cmd.Flags()
	f.StringVar(&dir, "data-dir", "", "the reporting data directory (default $REPORTING_DATA_DIR, or reporting/ in $BROKERFLOW_DATA_DIR)")
	f.StringVar(&dsn, "dsn", "", "rebuild into this PostgreSQL database instead, as a new schema (default $REPORTING_DATABASE_URL, or the first line of $REPORTING_DATABASE_URL_FILE)")
	f.StringVar(&from, "from-time", "", "start every stream at this RFC 3339 time")
	f.StringArrayVar(&fromSeq, "from-seq", nil, "start at a sequence: N for every stream, or STREAM=N (repeatable)")
	f.StringVar(&until, "until", "", "stop every stream after this RFC 3339 time")
	f.IntVar(&batch, "batch", 5000, "events written per transaction")
	f.BoolVar(&noSwitch, "no-switch", false, "leave a full rebuild beside the live database")
	f.DurationVar(&wait, "wait", 30*time.Second, "how long to wait for the running service to switch")
	return cmd
}

func parseTimeFlag(name, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s %q: want an RFC 3339 time such as 2026-03-01T00:00:00Z", name, s)
	}
	return t, nil
}

func parseFromSeq(vals []string) (map[string]uint64, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	out := map[string]uint64{}
	for _, v := range vals {
		stream, seq, ok := strings.Cut(v, "=")
		if !ok {
			stream, seq = "", v
		}
		n, err := strconv.ParseUint(seq, 10, 64)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("--from-seq %q: want N or STREAM=N with N a positive integer", v)
		}
		out[strings.ToUpper(stream)] = n
	}
	return out, nil
}
