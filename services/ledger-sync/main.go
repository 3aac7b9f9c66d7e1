// Command ledger-sync books each closed transaction's commission in the
// brokerage's accounting ledger (QuickBooks Online), exactly once.
package main

import (
	"context"
	"errors"
	"io"
	"os"

	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/services/ledger-sync/ledgersync"
)

func main() {
	os.Exit(service.Main("ledger-sync", "Books each closing's commission in the ledger (QuickBooks Online) once, split by the agent's commission plan.\nEvery setting is a LEDGERSYNC_* environment variable (see docs/ledger.md); there are no flags.", run))
}

func run(ctx context.Context, environ []string, stderr io.Writer) error {
	cfg, err := ledgersync.ConfigFromEnv(environ)
	if err != nil {
		return err
	}
	if !cfg.Enabled() {
		return errors.New("LEDGERSYNC_LEDGER is none: ledger-sync is off (set LEDGERSYNC_LEDGER=quickbooks)")
	}
	opts := service.ServeOptions{Name: "ledger-sync", NATS: cfg.NATS, Log: cfg.Log, DrainTimeout: cfg.ShutdownTimeout, Environ: environ}
	return service.Serve(ctx, opts, stderr, func(d service.Deps) (service.Service, error) {
		return ledgersync.New(cfg, d)
	})
}
