package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/logging"
	"github.com/brokerflow/brokerflow/pkg/service"
	commonv1 "github.com/brokerflow/brokerflow/proto/brokerflow/common/v1"
	"github.com/brokerflow/brokerflow/services/alerter/alerter"
	"github.com/brokerflow/brokerflow/services/brokerflow/internal/failures"
)

// filterFlags are the filters of ls and of a bulk redrive.
type filterFlags struct {
	service, source, reason, since string
	states                         []string
}

func (ff *filterFlags) register(cmd *cobra.Command, defaultStates string) {
	fs := cmd.Flags()
	fs.StringVar(&ff.service, "service", "", "only this service's failures (crm-sync, normalizer, …)")
	fs.StringVar(&ff.source, "source", "", "only failures of this lead source (idx, zillow, …)")
	fs.StringVar(&ff.reason, "reason", "", "only this reason code, or a glob of them (crm.http_400, 'crm.*')")
	fs.StringVar(&ff.since, "since", "", "only failures that failed last within this time (90m, 24h, 7d) or since an RFC 3339 time")
	fs.StringSliceVar(&ff.states, "state", nil, "open, failed_again, redriven, resolved or all; repeat or separate with commas (default "+defaultStates+")")
	_ = cmd.RegisterFlagCompletionFunc("state", cobra.FixedCompletions([]string{"open", "failed_again", "redriven", "resolved", "all"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("service", cobra.FixedCompletions(serviceNames(), cobra.ShellCompDirectiveNoFileComp))
}

func (ff *filterFlags) changed(cmd *cobra.Command) bool {
	for _, n := range []string{"service", "source", "reason", "since", "state"} {
		if cmd.Flags().Changed(n) {
			return true
		}
	}
	return false
}

func (ff *filterFlags) filter(defaults []failures.State) (failures.Filter, error) {
	fl := failures.Filter{Service: ff.service, Source: ff.source, Reason: ff.reason}
	since, err := failures.ParseSince(ff.since, time.Now())
	if err != nil {
		return fl, usageErrorf("%v", err)
	}
	fl.Since = since
	fl.States = defaults
	if len(ff.states) > 0 {
		fl.States = nil
		for _, s := range ff.states {
			if s == "all" {
				fl.States = nil
				break
			}
			st, err := failures.ParseState(s)
			if err != nil {
				return fl, usageErrorf("%v", err)
			}
			fl.States = append(fl.States, st)
		}
	}
	return fl, nil
}

func serviceNames() []string {
	var out []string
	for _, s := range bus.Services {
		out = append(out, s.Name)
	}
	return out
}

func failuresCmd(environ []string, stdout io.Writer) *cobra.Command {
	var nf natsFlags
	cmd := &cobra.Command{
		Use:   "failures",
		Short: "List, show, redrive and resolve failed messages",
		Long: `Every message a service could not handle has a failure record on the OPS stream. Its id is
SERVICE/STREAM/SEQUENCE, and it is open, failed_again (a redrive failed too), redriven (a
redrive succeeded) or resolved (a person handled it by hand). The state is read from the OPS
stream, so it is the same on every machine and after any restart.

Exit codes: 0 done; 1 an error (NATS unreachable, a failure not found); 2 bad usage (an
unknown flag, a bad id, a bad filter); 3 a redrive finished and some of its failures failed
again or were not answered.`,
		Example: `  brokerflow failures ls                                    # open failures, table
  brokerflow failures ls --service crm-sync --since 24h -o json
  brokerflow failures show crm-sync/LEADS/42
  brokerflow failures redrive crm-sync/LEADS/42
  brokerflow failures redrive --service crm-sync --reason crm.http_400   # every open one
  brokerflow failures resolve crm-sync/LEADS/42 --note "entered in Follow Up Boss by hand"`,
	}
	nf.register(cmd, bus.UserOperator)
	load := func(cmd *cobra.Command) ([]*failures.Failure, jetstream.JetStream, func(), error) {
		nc, js, err := nf.connect(environ)
		if err != nil {
			return nil, nil, nil, err
		}
		ctx := cmd.Context()
		if ctx == nil {
			ctx = context.Background()
		}
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		list, _, err := failures.Load(ctx, js)
		if err != nil {
			nc.Close()
			return nil, nil, nil, err
		}
		return list, js, nc.Close, nil
	}
	cmd.AddCommand(failuresLsCmd(load, stdout), failuresShowCmd(load, stdout), failuresRedriveCmd(load, environ, stdout), failuresResolveCmd(load, environ, stdout))
	return cmd
}

type loader func(cmd *cobra.Command) ([]*failures.Failure, jetstream.JetStream, func(), error)

func find(list []*failures.Failure, id string) (*failures.Failure, error) {
	if _, _, _, err := failures.ParseID(id); err != nil {
		return nil, usageErrorf("%v", err)
	}
	for _, f := range list {
		if f.ID == id {
			return f, nil
		}
	}
	return nil, fmt.Errorf("no failure %s on the OPS stream (brokerflow failures ls --state all lists them)", id)
}

// completeIDs completes a failure id from the OPS stream.
func completeIDs(load loader) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		list, _, closeNC, err := load(cmd)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		defer closeNC()
		var out []cobra.Completion
		for _, f := range list {
			out = append(out, cobra.CompletionWithDesc(f.ID, string(f.State)+" "+f.ReasonCode))
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

func outputFlag(cmd *cobra.Command, o *string) {
	cmd.Flags().StringVarP(o, "output", "o", "table", "table or json")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "json"}, cobra.ShellCompDirectiveNoFileComp))
}

func checkOutput(o string) error {
	if o != "table" && o != "json" {
		return usageErrorf("output %q: want table or json", o)
	}
	return nil
}

func failuresLsCmd(load loader, stdout io.Writer) *cobra.Command {
	var ff filterFlags
	var output string
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List failures, the open ones by default",
		Example: `  brokerflow failures ls
  brokerflow failures ls --state all
  brokerflow failures ls --service crm-sync --reason 'crm.*' --since 2h
  brokerflow failures ls --source zillow -o json | jq -r '.[].id'`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			fl, err := ff.filter(failures.Unsettled)
			if err != nil {
				return err
			}
			list, _, closeNC, err := load(cmd)
			if err != nil {
				return err
			}
			defer closeNC()
			sel := failures.Select(list, fl)
			if output == "json" {
				if sel == nil {
					sel = []*failures.Failure{}
				}
				return writeJSON(stdout, sel)
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATE\tLAST FAILED\tSOURCE\tREASON CODE\tFAILURES\tREASON")
			for _, f := range sel {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", f.ID, f.State, f.LastFailedAt.Format(time.RFC3339),
					orDash(f.Source), f.ReasonCode, f.Failures, logging.Truncate(strings.ReplaceAll(f.Reason, "\n", " "), 80))
			}
			return tw.Flush()
		},
	}
	ff.register(ls, "open,failed_again")
	outputFlag(ls, &output)
	return ls
}

// shown is what show prints.
type shown struct {
	*failures.Failure
	Message  any               `json:"message"`
	Journey  map[string]string `json:"journey"`
	Redrive  string            `json:"redrive_command"`
	Resolve  string            `json:"resolve_command"`
	Redacted bool              `json:"redacted"`
}

func failuresShowCmd(load loader, stdout io.Writer) *cobra.Command {
	var pii bool
	var output string
	show := &cobra.Command{
		Use:   "show ID",
		Short: "Print a failure and its failed message, decoded (redacted unless --pii)",
		Long: `Print a failure, the failed message read from its stream and decoded from protobuf as JSON,
the journey ids in it (lead, contact, transaction, source), and the commands that redrive or
resolve it. Emails, phone numbers, names and addresses are [redacted] unless --pii.`,
		Example: `  brokerflow failures show crm-sync/LEADS/42
  brokerflow failures show crm-sync/LEADS/42 --pii -o json`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if _, _, _, err := failures.ParseID(args[0]); err != nil {
				return usageErrorf("%v", err)
			}
			list, js, closeNC, err := load(cmd)
			if err != nil {
				return err
			}
			defer closeNC()
			f, err := find(list, args[0])
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			out := shown{Failure: f, Journey: map[string]string{}, Redrive: f.RedriveCommand(),
				Resolve: "brokerflow failures resolve " + f.ID + ` --note "…"`, Redacted: !pii}
			out.Message, err = decodeFailed(ctx, js, f, pii, out.Journey)
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(stdout, out)
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			row := func(k, v string) {
				if v != "" {
					fmt.Fprintf(tw, "%s\t%s\n", k, v)
				}
			}
			row("id", f.ID)
			row("state", string(f.State))
			row("service", f.Service+" (consumer "+f.Consumer+")")
			row("message", fmt.Sprintf("%s/%d %s %s", f.Stream, f.Sequence, f.Subject, f.EventType))
			row("reason", f.ReasonCode+": "+f.Reason)
			row("failed", fmt.Sprintf("%d time(s), first %s, last %s, %d attempt(s), %s", f.Failures,
				f.FirstFailedAt.Format(time.RFC3339), f.LastFailedAt.Format(time.RFC3339), f.Attempts, f.Class))
			if f.RedrivenAt != nil {
				row("redriven", f.RedrivenAt.Format(time.RFC3339)+" by "+orDash(f.RedrivenBy))
			}
			if f.ResolvedAt != nil {
				row("resolved", f.ResolvedAt.Format(time.RFC3339)+" by "+orDash(f.ResolvedBy)+": "+f.Note)
			}
			for _, k := range []string{"lead_id", "contact_id", "transaction_id", "lead_source", "source"} {
				row(k, out.Journey[k])
			}
			row("redrive", out.Redrive)
			row("resolve", out.Resolve)
			if err := tw.Flush(); err != nil {
				return err
			}
			label := "the failed message (redacted; --pii shows it whole):"
			if pii {
				label = "the failed message:"
			}
			b, err := json.MarshalIndent(out.Message, "", "  ")
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(stdout, "\n%s\n%s\n", label, b)
			return err
		},
	}
	show.ValidArgsFunction = completeIDs(load)
	show.Flags().BoolVar(&pii, "pii", false, "show emails, phone numbers, names and addresses")
	outputFlag(show, &output)
	return show
}

// decodeFailed reads the failed message from its stream and decodes it;
// a message past its stream's limits, or one that does not decode, is
// described instead.
func decodeFailed(ctx context.Context, js jetstream.JetStream, f *failures.Failure, pii bool, ids map[string]string) (any, error) {
	s, err := js.Stream(ctx, f.Stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", f.Stream, err)
	}
	raw, err := s.GetMsg(ctx, f.Sequence)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return "the message is no longer in its stream (past the stream's limits)", nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s/%d: %w", f.Stream, f.Sequence, err)
	}
	typ := raw.Header.Get(bus.HeaderType)
	v, found, err := alerter.DecodeMessage(typ, raw.Data, pii)
	if err != nil {
		return fmt.Sprintf("%d bytes that do not decode as %q: %v", len(raw.Data), typ, err), nil
	}
	for k, x := range found {
		ids[k] = x
	}
	return v, nil
}

func failuresRedriveCmd(load loader, environ []string, stdout io.Writer) *cobra.Command {
	var ff filterFlags
	var opt failures.Options
	var quiet bool
	redrive := &cobra.Command{
		Use:   "redrive [ID | SERVICE STREAM SEQUENCE]",
		Short: "Run failed messages again: one, or every one a filter selects",
		Long: `Ask the failure's service to run its handler again on the failed message: it fetches the
message by sequence; nothing is republished, so no other consumer sees it twice. With
filters instead of an id, every failure they select is redriven (the open and failed_again
ones unless --state says otherwise), at most --in-flight at a time. The service runs each
through its own handlers, so its pacer keeps the vendor's quota, and a vendor's 429 pauses it.

Each redrive is waited for on the OPS stream: succeeded (ops.redrive.done), failed again (a
new failure record), or no answer within --wait. Failures redriven or resolved already are
skipped unless --force. The summary counts them; the exit code is 3 when any failed again
or had no answer.`,
		Example: `  brokerflow failures redrive crm-sync/LEADS/42
  brokerflow failures redrive crm-sync LEADS 42                 # the same, as alerts print it
  brokerflow failures redrive --service crm-sync --reason crm.http_400
  brokerflow failures redrive --service crm-sync --since 6h --in-flight 4 --wait 10m`,
		Args: usageArgs(func(_ *cobra.Command, args []string) error {
			if len(args) != 0 && len(args) != 1 && len(args) != 3 {
				return fmt.Errorf("want an id, SERVICE STREAM SEQUENCE, or filters; got %d arguments", len(args))
			}
			return nil
		}),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := redriveID(args)
			if err != nil {
				return err
			}
			if id == "" && !ff.changed(cmd) {
				return usageErrorf("name a failure (SERVICE/STREAM/SEQUENCE), or select failures with --service, --source, --reason, --since or --state")
			}
			if id != "" && ff.changed(cmd) {
				return usageErrorf("an id and filters: give one or the other")
			}
			fl, err := ff.filter(failures.Unsettled)
			if err != nil {
				return err
			}
			if opt.By == "" {
				opt.By = service.EnvMap(environ)["USER"]
			}
			list, js, closeNC, err := load(cmd)
			if err != nil {
				return err
			}
			defer closeNC()
			var targets []*failures.Failure
			if id != "" {
				f, err := find(list, id)
				if err != nil {
					// A message without a failure record (its handler crashed:
					// the alert came from a dead-letter advisory) is redriven too.
					svc, stream, seq, _ := failures.ParseID(id)
					f = &failures.Failure{ID: id, Service: svc, Stream: stream, Sequence: seq, State: failures.Open}
					fmt.Fprintf(stdout, "%s has no failure record (a crashed handler's message?); redriving it all the same\n", id)
				}
				targets = []*failures.Failure{f}
			} else {
				targets = failures.Select(list, fl)
			}
			if len(targets) == 0 {
				fmt.Fprintln(stdout, "no failure matches: nothing to redrive")
				return nil
			}
			fmt.Fprintf(stdout, "redriving %d failure(s), at most %d at a time\n", len(targets), max(opt.InFlight, 1))
			opt.Progress = func(done, total int, r failures.Result) {
				if quiet && r.Outcome == failures.Succeeded {
					return
				}
				line := fmt.Sprintf("[%d/%d] %s %s", done, total, r.Failure.ID, r.Outcome)
				if r.Reason != "" {
					line += ": " + r.Reason
				}
				fmt.Fprintln(stdout, line)
			}
			sum, _, err := failures.Redrive(cmd.Context(), js, targets, opt)
			fmt.Fprintf(stdout, "redrive of %d: %d succeeded, %d failed again, %d skipped", sum.Total(), sum.Succeeded, sum.FailedAgain, sum.Skipped)
			if sum.NoAnswer > 0 {
				fmt.Fprintf(stdout, ", %d no answer", sum.NoAnswer)
			}
			if sum.Requested > 0 {
				fmt.Fprintf(stdout, ", %d requested (not waited for)", sum.Requested)
			}
			fmt.Fprintln(stdout)
			if err != nil {
				return err
			}
			if sum.FailedAgain > 0 || sum.NoAnswer > 0 {
				return &partialError{failed: sum.FailedAgain, unanswered: sum.NoAnswer}
			}
			return nil
		},
	}
	redrive.ValidArgsFunction = completeIDs(load)
	ff.register(redrive, "open,failed_again")
	redrive.Flags().StringVar(&opt.By, "by", "", "who asks, for the audit trail (default $USER)")
	redrive.Flags().IntVar(&opt.InFlight, "in-flight", 8, "at most this many redrives asked for and not yet answered")
	redrive.Flags().DurationVar(&opt.Wait, "wait", 2*time.Minute, "how long each redrive may take to be answered")
	redrive.Flags().BoolVar(&opt.NoWait, "no-wait", false, "only ask; do not wait for the answers")
	redrive.Flags().BoolVar(&opt.Force, "force", false, "redrive failures that were redriven or resolved already")
	redrive.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the redrives that did not succeed, and the summary")
	return redrive
}

// redriveID reads a redrive's arguments: none, an id, or the three of
// SERVICE STREAM SEQUENCE that alerts print.
func redriveID(args []string) (string, error) {
	switch len(args) {
	case 0:
		return "", nil
	case 1:
		if _, _, _, err := failures.ParseID(args[0]); err != nil {
			return "", usageErrorf("%v", err)
		}
		return args[0], nil
	}
	seq, err := strconv.ParseUint(args[2], 10, 64)
	if err != nil || seq == 0 {
		return "", usageErrorf("sequence %q: want a positive integer", args[2])
	}
	return failures.ID(args[0], args[1], seq), nil
}

func failuresResolveCmd(load loader, environ []string, stdout io.Writer) *cobra.Command {
	var note, by string
	resolve := &cobra.Command{
		Use:   "resolve ID --note TEXT",
		Short: "Mark a failure resolved by hand, with a note; its alert group resolves with it",
		Long: `Mark a failure that a person handled by hand (entered the lead in the CRM, decided it was
spam) as resolved, with a note saying what was done. It is announced on
ops.resolved.<service>: brokerflow failures ls stops listing it, and the alerter takes it out of
its alert group; once every failure of the group is redriven or resolved, PagerDuty's incident
is resolved and Slack and the webhook are told.`,
		Example: `  brokerflow failures resolve crm-sync/LEADS/42 --note "entered in Follow Up Boss by hand"
  brokerflow failures ls --reason lead.spam -o json | jq -r '.[].id' | \
    xargs -n1 brokerflow failures resolve --note "spam"`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, _, _, err := failures.ParseID(args[0]); err != nil {
				return usageErrorf("%v", err)
			}
			if strings.TrimSpace(note) == "" {
				return usageErrorf("--note is required: say what was done, for whoever reads it later")
			}
			if by == "" {
				by = service.EnvMap(environ)["USER"]
			}
			list, js, closeNC, err := load(cmd)
			if err != nil {
				return err
			}
			defer closeNC()
			f, err := find(list, args[0])
			if err != nil {
				return err
			}
			if f.State == failures.Resolved {
				fmt.Fprintf(stdout, "%s was resolved already, by %s: %s\n", f.ID, orDash(f.ResolvedBy), f.Note)
				return nil
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			ref := &commonv1.MessageRef{Stream: f.Stream, Sequence: f.Sequence, Subject: f.Subject}
			if _, err := bus.ResolveFailure(ctx, bus.NewPublisher(js, "brokerflow-cli", nil), f.Service, ref, note, by); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s resolved (was %s)\n", f.ID, f.State)
			return nil
		},
	}
	resolve.ValidArgsFunction = completeIDs(load)
	resolve.Flags().StringVar(&note, "note", "", "what was done (required)")
	resolve.Flags().StringVar(&by, "by", "", "who resolved it (default $USER)")
	return resolve
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
