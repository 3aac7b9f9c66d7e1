// Command brokerflow is the all-in-one Brokerflow server and operator CLI.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/brokerflow/brokerflow/services/brokerflow/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "brokerflow:", err)
		os.Exit(cli.ExitCode(err))
	}
}

func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	return cli.Execute(ctx, args, environ, stdout, stderr)
}
