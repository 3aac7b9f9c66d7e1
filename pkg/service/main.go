package service

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Main is the body of a service's main: every setting is an environment
// variable, so the only flag is -h/--help, which prints about and exits 0.
// It runs run with a context that ends on SIGINT or SIGTERM, the process
// environment and stderr, and returns the exit code for main to pass to
// os.Exit (1 on error, the error printed after name).
func Main(name, about string, run func(ctx context.Context, environ []string, stderr io.Writer) error) int {
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: %s\n\n%s\n", name, about)
	}
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Environ(), os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		return 1
	}
	return 0
}
