package cli

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/service"
	commonv1 "github.com/brokerflow/brokerflow/proto/brokerflow/common/v1"
	reportingv1 "github.com/brokerflow/brokerflow/proto/brokerflow/reporting/v1"
)

func spendCmd(environ []string, stdout io.Writer) *cobra.Command {
	var nf natsFlags
	cmd := &cobra.Command{Use: "spend", Short: "Set what each lead source costs per month, for the reports' ROI"}
	nf.register(cmd, bus.UserOperator)
	var file, currency, note, by string
	set := &cobra.Command{
		Use:   "set [SOURCE MONTH AMOUNT]",
		Short: "Publish the spend of a source in a month (reporting.spend.<source>.<month>); the latest one is in force",
		Long: `Publish a reporting.v1.SpendSet: SOURCE as configured, MONTH as YYYY-MM, AMOUNT in the currency's
units (1250 or 1250.50). With --file, one per line: source,month,amount[,currency[,note]].
Runs as the operator. A replay of the REPORTING stream reproduces every spend.`,
		Args: func(_ *cobra.Command, args []string) error {
			if (file == "") == (len(args) == 3) {
				return nil
			}
			return errors.New("give SOURCE MONTH AMOUNT, or --file")
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var sets []*reportingv1.SpendSet
			if by == "" {
				by = service.EnvMap(environ)["USER"]
			}
			now := time.Now()
			add := func(source, month, amount, cur, note string) error {
				s, err := newSpend(source, month, amount, cur, note)
				if err != nil {
					return err
				}
				s.SetBy, s.SetAt = by, timestamppb.New(now)
				sets = append(sets, s)
				return nil
			}
			if file != "" {
				if err := readSpendFile(file, currency, add); err != nil {
					return err
				}
			} else if err := add(args[0], args[1], args[2], currency, note); err != nil {
				return err
			}
			nc, js, err := nf.connect(environ)
			if err != nil {
				return err
			}
			defer nc.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			pub := bus.NewPublisher(js, "brokerflow-cli", nil)
			for i, s := range sets {
				id := fmt.Sprintf("spend:%s:%s:%d", s.GetSource(), s.GetMonth(), now.UnixNano()+int64(i))
				ack, err := pub.Publish(ctx, bus.SpendSubject(s.GetSource(), s.GetMonth()), id, s)
				if err != nil {
					return err
				}
				fmt.Fprintf(stdout, "spend of %s in %s set to %s %s (REPORTING sequence %d)\n", s.GetSource(), s.GetMonth(),
					formatMinor(s.GetAmount().GetAmountMinor()), s.GetAmount().GetCurrencyCode(), ack.Sequence)
			}
			return nil
		},
	}
	set.Flags().StringVar(&file, "file", "", "a CSV file: source,month,amount[,currency[,note]] per line")
	set.Flags().StringVar(&currency, "currency", "USD", "ISO 4217 currency code")
	set.Flags().StringVar(&note, "note", "", "free text, e.g. the invoice")
	set.Flags().StringVar(&by, "by", "", "who sets it, for the audit trail (default $USER)")
	cmd.AddCommand(set)
	return cmd
}

var (
	sourceName = regexp.MustCompile(`^[a-z0-9_-]+$`)
	monthRE    = regexp.MustCompile(`^\d{4}-(0[1-9]|1[0-2])$`)
	amountRE   = regexp.MustCompile(`^(\d+)(?:\.(\d{1,2}))?$`)
)

// newSpend validates one spend and converts the amount to minor units.
func newSpend(source, month, amount, currency, note string) (*reportingv1.SpendSet, error) {
	if !sourceName.MatchString(source) {
		return nil, fmt.Errorf("source %q: want [a-z0-9_-]+", source)
	}
	if !monthRE.MatchString(month) {
		return nil, fmt.Errorf("month %q: want YYYY-MM", month)
	}
	m := amountRE.FindStringSubmatch(strings.ReplaceAll(strings.TrimSpace(amount), ",", ""))
	if m == nil {
		return nil, fmt.Errorf("amount %q: want units with at most two decimals, e.g. 1250.50", amount)
	}
	units, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil || units > 1<<40 {
		return nil, fmt.Errorf("amount %q: too large", amount)
	}
	cents, _ := strconv.ParseInt((m[2] + "00")[:2], 10, 64)
	currency = strings.ToUpper(strings.TrimSpace(currency))
	if len(currency) != 3 {
		return nil, fmt.Errorf("currency %q: want an ISO 4217 code such as USD", currency)
	}
	return &reportingv1.SpendSet{Source: source, Month: month, Note: note,
		Amount: &commonv1.Money{AmountMinor: units*100 + cents, CurrencyCode: currency}}, nil
}

func readSpendFile(path, currency string, add func(source, month, amount, currency, note string) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	r.Comment = '#'
	line := 0
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		line++
		if len(rec) < 3 {
			return fmt.Errorf("%s: line %d: want source,month,amount[,currency[,note]]", path, line)
		}
		if line == 1 && strings.EqualFold(strings.TrimSpace(rec[0]), "source") {
			continue // a header
		}
		cur, note := currency, ""
		if len(rec) > 3 && strings.TrimSpace(rec[3]) != "" {
			cur = rec[3]
		}
		if len(rec) > 4 {
			note = rec[4]
		}
		if err := add(strings.TrimSpace(rec[0]), strings.TrimSpace(rec[1]), rec[2], cur, note); err != nil {
			return fmt.Errorf("%s: line %d: %w", path, line, err)
		}
	}
}

func formatMinor(v int64) string { return fmt.Sprintf("%d.%02d", v/100, v%100) }
