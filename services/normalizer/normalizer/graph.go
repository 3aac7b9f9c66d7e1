package normalizer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/pkg/vendorapi"
)

// GraphConfig points the Facebook Lead Ads reader at the Graph API, the sandbox
// (http://host:port/graph/v19.0), or any compatible server.
type GraphConfig struct {
	// BaseURL includes the API version.
	BaseURL string `env:"BASE_URL" envDefault:"https://graph.facebook.com/v19.0"`
	// AccessToken is a Page access token with leads_retrieval (and
	// ads_management for the ad fields). AccessTokenFile, when AccessToken is
	// empty, holds it instead (its first non-comment line); it is read on
	// every call, so a rotated token is picked up without a restart.
	AccessToken     string        `env:"ACCESS_TOKEN"`
	AccessTokenFile string        `env:"ACCESS_TOKEN_FILE"`
	Timeout         time.Duration `env:"TIMEOUT" envDefault:"10s"`
}

// Validate reports the first invalid setting, naming the NORMALIZER_GRAPH_*
// variable. Call it only when a Facebook source is configured: the token is
// required then.
func (c GraphConfig) Validate() error {
	if c.AccessToken == "" && c.AccessTokenFile == "" {
		return fmt.Errorf("%w: NORMALIZER_GRAPH_ACCESS_TOKEN or NORMALIZER_GRAPH_ACCESS_TOKEN_FILE is required to read Facebook leads (or run brokerflow with --sandbox)", ErrConfig)
	}
	if _, err := c.token(); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if err := vendorapi.CheckEndpoint(Prefix+"GRAPH_", c.BaseURL, c.Timeout); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return nil
}

// token returns the access token, from the file when it is not set inline.
func (c GraphConfig) token() (string, error) {
	if c.AccessToken != "" {
		return c.AccessToken, nil
	}
	if c.AccessTokenFile == "" {
		return "", errors.New("NORMALIZER_GRAPH_ACCESS_TOKEN is not set")
	}
	s, err := service.Secrets(nil, c.AccessTokenFile)
	if err != nil {
		return "", fmt.Errorf("NORMALIZER_GRAPH_ACCESS_TOKEN_FILE: %w", err)
	}
	if len(s) == 0 {
		return "", errors.New("NORMALIZER_GRAPH_ACCESS_TOKEN_FILE holds no token")
	}
	return s[0], nil
}

// graphLeadFields are the lead fields ReadLead asks for. ad_id and
// campaign_id need ads_management [O]; an organic lead has neither.
const graphLeadFields = "id,created_time,ad_id,form_id,campaign_id,field_data"

// GraphClient reads Facebook leads with the Graph API:
// GET <BaseURL>/<leadgen_id>?fields=…, with the access token as
// Authorization: Bearer, through the vendor client (pkg/vendorapi) and its
// Graph classifier. It is safe for concurrent use.
type GraphClient struct {
	api *vendorapi.Client
}

var _ LeadReader = (*GraphClient)(nil)

// NewGraphClient returns a client for cfg; cfg.Timeout bounds every call.
func NewGraphClient(cfg GraphConfig) *GraphClient {
	return &GraphClient{api: vendorapi.New(vendorapi.Config{
		Vendor:  "graph",
		Area:    "graph",
		BaseURL: cfg.BaseURL,
		Timeout: cfg.Timeout,
		// The token is read on every call, so a rotated token file is
		// picked up without a restart.
		Auth:     vendorapi.OAuth(vendorapi.TokenFunc(func(context.Context) (string, error) { return cfg.token() })),
		Classify: vendorapi.GraphClassifier,
	})}
}

// ReadLead reads one lead and returns it as a map: id, created_time (as
// Graph writes it, "2026-11-26T20:00:00+0000"), ad_id, form_id and
// campaign_id when Graph answers them (an organic lead has no ad fields),
// "fields" with each field_data name → its first value (a string; a field
// without a value is left out), and "all_fields" with each name → every
// value ([]any of strings).
//
// Errors are vendorapi's, classified by vendorapi.GraphClassifier: no answer
// (the timeout included) is transient, graph.unreachable; a Graph rate limit
// (HTTP 400 with code 4, 17, 32 or 613, or a 429) is bus.Throttled,
// graph.rate_limited, which delays this lead only (the normalizer's consumer
// does not pause on it); a 5xx or an error Graph marks is_transient is
// transient; any other 4xx (an unknown lead, a bad or expired token, a
// missing permission) is permanent, graph.http_<status>, around a
// *vendorapi.Error. A missing token is transient, graph.auth: a redrive
// after the fix recovers it, and the retries give the fix a chance. Neither
// the token nor the request URL appears in an error.
func (g *GraphClient) ReadLead(ctx context.Context, leadgenID string) (map[string]any, error) {
	if strings.TrimSpace(leadgenID) == "" {
		return nil, bus.Permanentf("read Facebook lead: the leadgen id is empty")
	}
	var raw json.RawMessage
	path := "/" + url.PathEscape(leadgenID) + "?" + url.Values{"fields": {graphLeadFields}}.Encode()
	if _, err := g.api.Do(ctx, "read lead", http.MethodGet, path, nil, &raw); err != nil {
		return nil, fmt.Errorf("read Facebook lead %s: %w", leadgenID, err)
	}
	lead, err := decodeGraphLead(raw)
	if err != nil {
		return nil, fmt.Errorf("read Facebook lead %s: %w", leadgenID, err)
	}
	return lead, nil
}

// decodeGraphLead turns the read's answer into ReadLead's map.
func decodeGraphLead(raw []byte) (map[string]any, error) {
	var l struct {
		ID          string `json:"id"`
		CreatedTime string `json:"created_time"`
		AdID        string `json:"ad_id"`
		FormID      string `json:"form_id"`
		CampaignID  string `json:"campaign_id"`
		FieldData   []struct {
			Name   string `json:"name"`
			Values []any  `json:"values"`
		} `json:"field_data"`
	}
	if err := json.Unmarshal(raw, &l); err != nil {
		return nil, fmt.Errorf("decode answer: %w", err)
	}
	if l.ID == "" {
		return nil, errors.New("decode answer: the lead has no id")
	}
	first, all := map[string]any{}, map[string]any{}
	for _, f := range l.FieldData {
		if f.Name == "" {
			continue
		}
		values := make([]any, 0, len(f.Values))
		for _, v := range f.Values {
			values = append(values, graphText(v))
		}
		all[f.Name] = values
		if len(values) > 0 {
			first[f.Name] = values[0]
		}
	}
	out := map[string]any{"id": l.ID, "fields": first, "all_fields": all}
	for k, v := range map[string]string{"created_time": l.CreatedTime, "ad_id": l.AdID, "form_id": l.FormID, "campaign_id": l.CampaignID} {
		if v != "" {
			out[k] = v
		}
	}
	return out, nil
}

// graphText is a field value as text: Graph sends strings, and anything else
// is kept as its JSON.
func graphText(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}
