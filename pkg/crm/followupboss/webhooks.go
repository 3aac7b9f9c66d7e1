package followupboss

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/brokerflow/brokerflow/pkg/jsonscalar"
)

// WebhookEvents are the webhook events that crm-sync turns into CRM change
// events: the ones ParseWebhook maps to a change of a contact. Registering
// others would only cost deliveries that crm-sync acknowledges and ignores.
func WebhookEvents() []string { return slices.Sorted(maps.Keys(fubChangeKinds)) }

// Webhook is one webhook registration of the account, for one event.
type Webhook struct {
	ID     string `json:"id"`
	Event  string `json:"event"`
	URL    string `json:"url"`
	Status string `json:"status"`
}

// fubWebhookView is a registration as Follow Up Boss answers it.
type fubWebhookView struct {
	ID     json.RawMessage `json:"id"`
	Event  string          `json:"event"`
	URL    string          `json:"url"`
	Status string          `json:"status"`
}

func (v fubWebhookView) webhook() Webhook {
	return Webhook{ID: jsonscalar.String(v.ID), Event: v.Event, URL: v.URL, Status: v.Status}
}

// Webhooks lists the account's webhook registrations (GET /v1/webhooks,
// following next). Follow Up Boss allows webhook calls to the account owner
// only, and requires the registered system's X-System and X-System-Key:
// the registrations belong to that system.
func (f *FollowUpBoss) Webhooks(ctx context.Context) ([]Webhook, error) {
	var out []Webhook
	q := url.Values{"limit": {"100"}}
	for {
		var page struct {
			Metadata struct {
				Next *string `json:"next"`
			} `json:"_metadata"`
			Webhooks []fubWebhookView `json:"webhooks"`
		}
		if _, err := f.api.Do(ctx, "list webhooks", http.MethodGet, "/v1/webhooks?"+q.Encode(), nil, &page); err != nil {
			return nil, err
		}
		for _, v := range page.Webhooks {
			out = append(out, v.webhook())
		}
		if page.Metadata.Next == nil || *page.Metadata.Next == "" || len(page.Webhooks) == 0 {
			return out, nil
		}
		q.Set("next", *page.Metadata.Next)
	}
}

// RegisterWebhook registers callback for event (POST /v1/webhooks).
func (f *FollowUpBoss) RegisterWebhook(ctx context.Context, event, callback string) (Webhook, error) {
	var v fubWebhookView
	body := map[string]string{"event": event, "url": callback}
	if _, err := f.api.Do(ctx, "register webhook", http.MethodPost, "/v1/webhooks", body, &v); err != nil {
		return Webhook{}, err
	}
	return v.webhook(), nil
}

// DeleteWebhook removes registration id (DELETE /v1/webhooks/{id}).
func (f *FollowUpBoss) DeleteWebhook(ctx context.Context, id string) error {
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil || n <= 0 {
		return fmt.Errorf("followupboss: %q is not a webhook id", id)
	}
	_, err = f.api.Do(ctx, "delete webhook", http.MethodDelete, "/v1/webhooks/"+strconv.FormatInt(n, 10), nil, nil)
	return err
}

// EnsureWebhooks registers callback for each of events that has no
// registration for that exact URL yet, and returns the registrations it
// made and those it found. Running it again registers nothing.
func (f *FollowUpBoss) EnsureWebhooks(ctx context.Context, callback string, events []string) (made, found []Webhook, err error) {
	have, err := f.Webhooks(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, event := range events {
		i := slices.IndexFunc(have, func(h Webhook) bool { return h.Event == event && SameURL(h.URL, callback) })
		if i >= 0 {
			found = append(found, have[i])
			continue
		}
		h, err := f.RegisterWebhook(ctx, event, callback)
		if err != nil {
			return made, found, fmt.Errorf("register %s: %w", event, err)
		}
		made = append(made, h)
	}
	return made, found, nil
}

// SameURL compares two callback URLs, ignoring a trailing slash and the
// case of the scheme and host.
func SameURL(a, b string) bool {
	norm := func(s string) string {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil {
			return s
		}
		u.Scheme, u.Host = strings.ToLower(u.Scheme), strings.ToLower(u.Host)
		u.Path = strings.TrimRight(u.Path, "/")
		return u.String()
	}
	return norm(a) == norm(b)
}
