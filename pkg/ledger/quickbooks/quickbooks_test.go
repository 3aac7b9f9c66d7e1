package quickbooks_test

import (
	"testing"

	"github.com/brokerflow/brokerflow/pkg/ledger/ledgertest"
)

// TestQuickBooks_contract runs the ledger contract against the sandbox's
// QuickBooks Online.
func TestQuickBooks_contract(t *testing.T) {
	t.Parallel()
	ledgertest.Run(t, ledgertest.QuickBooks)
}
