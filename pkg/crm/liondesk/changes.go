package liondesk

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/brokerflow/brokerflow/pkg/crm"
)

// liondeskContactView is a contact as GET /contacts lists it.
type liondeskContactView struct {
	ID          int64     `json:"id"`
	FirstName   string    `json:"first_name"`
	LastName    string    `json:"last_name"`
	Email       string    `json:"email"`
	MobilePhone string    `json:"mobile_phone"`
	HomePhone   string    `json:"home_phone"`
	OfficePhone string    `json:"office_phone"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// ChangedSince lists the contacts updated at or after since, oldest first,
// page by page. LionDesk publishes no change feed and no webhooks: the
// updated_since filter is the assumption docs/crm.md states. LionDesk
// contacts have no pipeline stage, so a poll only ever yields
// crm.contact.updated.
func (l *LionDesk) ChangedSince(ctx context.Context, since time.Time) ([]crm.Person, error) {
	const limit = 100
	var out []crm.Person
	for offset := 0; ; offset += limit {
		var page struct {
			Data  []liondeskContactView `json:"data"`
			Total int                   `json:"total"`
		}
		q := url.Values{"updated_since": {since.UTC().Format(time.RFC3339Nano)}, "limit": {strconv.Itoa(limit)}, "offset": {strconv.Itoa(offset)}}
		if _, err := l.api.Do(ctx, "list changed contacts", http.MethodGet, "/contacts?"+q.Encode(), nil, &page); err != nil {
			return nil, err
		}
		for _, c := range page.Data {
			out = append(out, crm.Person{
				ID:        strconv.FormatInt(c.ID, 10),
				FirstName: c.FirstName,
				LastName:  c.LastName,
				Emails:    nonEmpty(c.Email),
				Phones:    nonEmpty(c.MobilePhone, c.HomePhone, c.OfficePhone),
				Updated:   c.UpdatedAt,
			})
		}
		if len(page.Data) < limit || offset+limit >= page.Total {
			return out, nil
		}
	}
}
