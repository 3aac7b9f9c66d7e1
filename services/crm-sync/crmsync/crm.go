package crmsync

import (
	"context"

	"github.com/brokerflow/brokerflow/pkg/crm"
	"github.com/brokerflow/brokerflow/pkg/crm/followupboss"
	"github.com/brokerflow/brokerflow/pkg/crm/liondesk"
	leadv1 "github.com/brokerflow/brokerflow/proto/brokerflow/lead/v1"
)

// CRM is what crm-sync needs from a CRM. The adapters in pkg/crm (Follow
// Up Boss, LionDesk) implement it and pass the same contract suite
// (pkg/crm/crmtest).
type CRM interface {
	// Name is the CRM's name in events, e.g. "followupboss".
	Name() string
	// Find looks the person up by email, then by phone.
	Find(ctx context.Context, id crm.Identity) (crm.Match, bool, error)
	// Record puts the lead into the CRM: as activity on contactID when the
	// person is known, otherwise creating the person.
	Record(ctx context.Context, lead *leadv1.Lead, contactID string) (crm.Recorded, error)
	// HasLead reports whether the lead's activity is on the contact: after
	// a crash it tells whether the CRM call landed.
	HasLead(ctx context.Context, contactID, leadID string) (bool, error)
	// AddDetails adds to the contact the email and phone of id that it
	// lacks, never removing one; it reports whether it added any.
	AddDetails(ctx context.Context, contactID string, id crm.Identity) (bool, error)
	// AddNote adds a note for the agents to the contact.
	AddNote(ctx context.Context, contactID, body string) error
}

var (
	_ CRM          = (*followupboss.FollowUpBoss)(nil)
	_ ChangeSource = (*followupboss.FollowUpBoss)(nil)
	_ CRM          = (*liondesk.LionDesk)(nil)
	_ ChangePoller = (*liondesk.LionDesk)(nil)
)
