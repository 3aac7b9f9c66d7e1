// Command tms-sync keeps the brokerage's transaction manager (Dotloop or
// SkySlope) in step with its CRM.
package main

import (
	"context"
	"errors"
	"io"
	"os"

	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/services/tms-sync/tmssync"
)

func main() {
	os.Exit(service.Main("tms-sync", "Opens one prefilled transaction in the TMS per client episode, carries contact changes into it, and announces closings.\nEvery setting is a TMSSYNC_* environment variable (see docs/tms.md); there are no flags.", run))
}

func run(ctx context.Context, environ []string, stderr io.Writer) error {
	cfg, err := tmssync.ConfigFromEnv(environ)
	if err != nil {
		return err
	}
	if !cfg.Enabled() {
		return errors.New("TMSSYNC_TMS is none: tms-sync is off (set TMSSYNC_TMS=dotloop or skyslope)")
	}
	opts := service.ServeOptions{Name: "tms-sync", NATS: cfg.NATS, Log: cfg.Log, DrainTimeout: cfg.ShutdownTimeout, Environ: environ}
	return service.Serve(ctx, opts, stderr, func(d service.Deps) (service.Service, error) {
		return tmssync.New(cfg, d)
	})
}
