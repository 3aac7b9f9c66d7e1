// Package cli is the brokerflow command line: the all-in-one server and the
// operator's commands.
package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natsauth"
	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/services/brokerflow/internal/app"
)

// Execute runs the command line in args.
func Execute(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	root := &cobra.Command{
		Use:           "brokerflow",
		Short:         "Brokerflow connects a brokerage's lead sources, CRM, transaction manager and ledger.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(runCmd(environ, stdout, stderr), demoCmd(environ, stdout), streamsCmd(environ, stdout), failuresCmd(environ, stdout), usersCmd(environ, stdout),
		replayCmd(environ, stdout), spendCmd(environ, stdout), crmCmd(environ, stdout), alertsCmd(environ, stdout), connectCmd(environ, stdout), tmsCmd(environ, stdout))
	return root.ExecuteContext(ctx)
}

func runCmd(environ []string, stdout, stderr io.Writer) *cobra.Command {
	var mode app.Mode
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Start an embedded JetStream server and every service in this process",
		Long: `Start an embedded JetStream server on 127.0.0.1 and every service in one process.
Settings come from BROKERFLOW_*, GATEWAY_*, NORMALIZER_*, CRMSYNC_* and REPORTING_* variables (see the README).
With --sandbox, the sandbox starts too, every adapter points at it, and a public development
secret signs the IDX website source (as --dev does). Without them, GATEWAY_IDX_SECRETS and the
vendors' credentials (CRMSYNC_FUB_API_KEY) are required.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := app.ConfigFromEnv(environ, mode)
			if err != nil {
				return err
			}
			a, err := app.Start(cmd.Context(), cfg, stderr, nil)
			if err != nil {
				return err
			}
			a.PrintBanner(stdout)
			return a.Wait()
		},
	}
	cmd.Flags().BoolVar(&mode.Dev, "dev", false, "use development secrets (printed at start); never in production")
	cmd.Flags().BoolVar(&mode.Sandbox, "sandbox", false, "start the sandbox and point every adapter at it (implies --dev)")
	return cmd
}

// natsFlags is how operator commands reach NATS.
type natsFlags struct {
	cfg service.NATSConfig
	// user is whose seed the command uses by default: the operator's, or
	// the analyst's for a command that only reads.
	user string
}

// connect opens the command's connection: to --server, BROKERFLOW_NATS_URL
// or the local default; with the nkey seed of --nkey,
// BROKERFLOW_NATS_NKEY_FILE, or else the user's seed in the credentials
// directory that brokerflow run made (BROKERFLOW_NATS_CREDS_DIR, or creds/
// in BROKERFLOW_DATA_DIR), when it exists.
func (f *natsFlags) connect(environ []string) (*nats.Conn, jetstream.JetStream, error) {
	m := service.EnvMap(environ)
	if f.cfg.URL == "" {
		f.cfg.URL = m["BROKERFLOW_NATS_URL"]
	}
	if f.cfg.URL == "" {
		f.cfg.URL = "nats://127.0.0.1:4222"
	}
	if f.cfg.User == "" {
		f.cfg.User, f.cfg.Password = m["BROKERFLOW_NATS_USER"], m["BROKERFLOW_NATS_PASSWORD"]
	}
	if f.cfg.NkeyFile == "" {
		f.cfg.NkeyFile = m["BROKERFLOW_NATS_NKEY_FILE"]
	}
	if f.cfg.NkeyFile == "" && f.cfg.User == "" {
		dir := m["BROKERFLOW_NATS_CREDS_DIR"]
		if dir == "" {
			data := m["BROKERFLOW_DATA_DIR"]
			if data == "" {
				data = ".brokerflow/data"
			}
			dir = filepath.Join(data, "creds")
		}
		if seed := natsauth.SeedFile(dir, f.user); fileExists(seed) {
			f.cfg.NkeyFile = seed
		}
	}
	if f.cfg.NkeyFile != "" {
		f.cfg.InboxPrefix = bus.InboxPrefix(f.user)
	}
	nc, err := f.cfg.Connect("brokerflow-cli")
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func (f *natsFlags) register(cmd *cobra.Command, user string) {
	f.user = user
	cmd.PersistentFlags().StringVar(&f.cfg.URL, "server", "", "NATS URL (default $BROKERFLOW_NATS_URL or nats://127.0.0.1:4222)")
	cmd.PersistentFlags().StringVar(&f.cfg.NkeyFile, "nkey", "", "nkey seed file (default $BROKERFLOW_NATS_NKEY_FILE, or the "+user+" seed brokerflow run made)")
}

func streamsCmd(environ []string, stdout io.Writer) *cobra.Command {
	var nf natsFlags
	cmd := &cobra.Command{Use: "streams", Short: "Manage the JetStream declarations"}
	nf.register(cmd, bus.UserOperator)
	cmd.AddCommand(&cobra.Command{
		Use:   "apply",
		Short: "Create or update every stream, consumer and KV bucket (idempotent)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var tc service.TopologyConfig
			if err := service.ParseEnv(&tc, app.Prefix+"BUS_", environ); err != nil {
				return err
			}
			nc, js, err := nf.connect(environ)
			if err != nil {
				return err
			}
			defer nc.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			if err := bus.Apply(ctx, js, tc.Topology()); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "applied %d streams, %d consumers, %d buckets (replicas %d)\n",
				len(bus.Streams), len(bus.AllConsumers()), len(bus.Buckets), tc.Replicas)
			return nil
		},
	})
	return cmd
}
