package alerter

import (
	"strings"

	opsv1 "github.com/brokerflow/brokerflow/proto/brokerflow/ops/v1"
)

// Runbook names the page of docs/runbooks/ that says what an alert means
// and what to do.
func Runbook(a *Alert) string {
	switch {
	case a.ReasonCode == CodeMaxDeliveries || a.ReasonCode == CodeTerminated:
		return "handler-crashed"
	case a.Kind == opsv1.AlertKind_ALERT_KIND_REJECTED || strings.HasPrefix(a.Group, "rejected/"):
		return "lead-rejected"
	case strings.HasPrefix(a.Group, "check/"+CheckStuck):
		return "consumer-stuck"
	case strings.HasPrefix(a.Group, "check/"+CheckFull):
		return "stream-full"
	case strings.HasPrefix(a.Group, "check/"+CheckSilent):
		return "source-silent"
	case strings.HasPrefix(a.Group, "check/"+CheckPoll):
		return "poll-failing"
	case a.Kind == opsv1.AlertKind_ALERT_KIND_TEST:
		return "README"
	}
	return "message-failed"
}
