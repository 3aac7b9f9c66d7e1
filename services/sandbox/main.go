// Command sandbox serves the vendor emulations (Follow Up Boss, LionDesk, the Facebook Graph
// lead read, Slack incoming webhooks, PagerDuty Events API v2, Dotloop, QuickBooks Online) for
// development and tests.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

func main() {
	// Every setting is an environment variable; the only flag is -h/--help (exit 0).
	flag.Usage = func() {
		fmt.Fprint(flag.CommandLine.Output(), "Usage: sandbox\n\nServes the vendor emulations (Follow Up Boss, LionDesk, the Facebook Graph lead read, Slack incoming webhooks, PagerDuty Events API v2, Dotloop, QuickBooks Online).\nEvery setting is a SANDBOX_* environment variable (see the README); there are no flags.\n")
	}
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Getenv, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "sandbox:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, getenv func(string) string, stderr io.Writer) error {
	addr := getenv("SANDBOX_ADDR")
	if addr == "" {
		addr = "127.0.0.1:8099"
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler:           sandbox.New(sandbox.Options{}).Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	slog.New(slog.NewJSONHandler(stderr, nil)).Info("sandbox listening", "url", "http://"+ln.Addr().String())

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}
