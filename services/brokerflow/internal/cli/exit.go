package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes that scripts can rely on.
const (
	ExitOK = 0
	// ExitError: the command could not do its work (NATS unreachable, a
	// failure not found, a publish refused).
	ExitError = 1
	// ExitUsage: the command line is wrong (an unknown command or flag, a
	// bad argument); nothing was done.
	ExitUsage = 2
	// ExitPartial: a redrive ran, and some of its failures failed again or
	// were not answered in time.
	ExitPartial = 3
)

// ExitCode is the process's exit code for the error Execute returned.
func ExitCode(err error) int {
	var u *usageError
	var p *partialError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &u):
		return ExitUsage
	case errors.As(err, &p):
		return ExitPartial
	case strings.HasPrefix(err.Error(), "unknown command "), strings.HasPrefix(err.Error(), "unknown flag"):
		// cobra's own, which it does not type.
		return ExitUsage
	}
	return ExitError
}

// usageError is a command line that is wrong.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// usageArgs makes a positional-argument check's error a usage error.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return &usageError{err}
		}
		return nil
	}
}

// partialError is a redrive in which some failures failed again or had
// no answer.
type partialError struct{ failed, unanswered int }

func (e *partialError) Error() string {
	return fmt.Sprintf("%d redrive(s) failed again and %d had no answer", e.failed, e.unanswered)
}
