package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/service"
	opsv1 "github.com/brokerflow/brokerflow/proto/brokerflow/ops/v1"
)

func failuresCmd(environ []string, stdout io.Writer) *cobra.Command {
	var nf natsFlags
	cmd := &cobra.Command{Use: "failures", Short: "List failure records and redrive failed messages"}
	nf.register(cmd, bus.UserOperator)

	var only string
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List failure records (ops.failure.>)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			nc, js, err := nf.connect(environ)
			if err != nil {
				return err
			}
			defer nc.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			filter := "ops.failure.>"
			if only != "" {
				filter = bus.FailureSubject(only)
			}
			return listFailures(ctx, js, filter, stdout)
		},
	}
	ls.Flags().StringVar(&only, "service", "", "only this service's failures")

	var by string
	redrive := &cobra.Command{
		Use:   "redrive SERVICE STREAM SEQUENCE",
		Short: "Ask SERVICE to run its handler again on the message at STREAM/SEQUENCE",
		Long: `Publish ops.redrive.SERVICE. The service fetches the message by sequence and runs its
handler again; nothing is republished, so no other consumer sees the message twice.
A failure record's service, stream and sequence are the arguments.`,
		Args: cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			seq, err := strconv.ParseUint(args[2], 10, 64)
			if err != nil || seq == 0 {
				return fmt.Errorf("sequence %q: want a positive integer", args[2])
			}
			nc, js, err := nf.connect(environ)
			if err != nil {
				return err
			}
			defer nc.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			if by == "" {
				by = service.EnvMap(environ)["USER"]
			}
			ack, err := bus.RequestRedrive(ctx, bus.NewPublisher(js, "brokerflow-cli", nil), args[0], args[1], seq, by)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "redrive of %s/%d requested from %s (OPS sequence %d)\n", args[1], seq, args[0], ack.Sequence)
			return nil
		},
	}
	redrive.Flags().StringVar(&by, "by", "", "who asks, for the audit trail (default $USER)")
	cmd.AddCommand(ls, redrive)
	return cmd
}

func listFailures(ctx context.Context, js jetstream.JetStream, filter string, w io.Writer) error {
	c, err := js.OrderedConsumer(ctx, bus.StreamOps, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FAILED AT\tSERVICE\tSTREAM\tSEQ\tSUBJECT\tCLASS\tATTEMPTS\tREDRIVE\tREASON")
	for {
		batch, err := c.FetchNoWait(256)
		if err != nil {
			return err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			var f opsv1.Failure
			if err := proto.Unmarshal(m.Data(), &f); err != nil {
				fmt.Fprintf(tw, "?\t?\t?\t?\t%s\t?\t?\t?\tundecodable record\n", m.Subject())
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%d\t%v\t%s\n",
				f.GetFailedAt().AsTime().Format(time.RFC3339), f.GetService(), f.GetMessage().GetStream(),
				f.GetMessage().GetSequence(), f.GetMessage().GetSubject(), f.GetClass(), f.GetAttempts(), f.GetRedrive(), f.GetReason())
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return err
		}
		if n == 0 {
			return tw.Flush()
		}
	}
}
