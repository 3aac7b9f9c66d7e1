package normalizer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/logging"
	"github.com/brokerflow/brokerflow/pkg/service"
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
	if u, err := url.Parse(c.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: NORMALIZER_GRAPH_BASE_URL %q is not an absolute http(s) URL", ErrConfig, c.BaseURL)
	}
	if c.Timeout <= 0 {
		return fmt.Errorf("%w: NORMALIZER_GRAPH_TIMEOUT must be positive", ErrConfig)
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

// maxGraphAnswer bounds a Graph answer ReadLead reads.
const maxGraphAnswer = 1 << 20

// GraphClient reads Facebook leads with the Graph API:
// GET <BaseURL>/<leadgen_id>?fields=…&access_token=…. It is safe for
// concurrent use.
type GraphClient struct {
	cfg    GraphConfig
	base   string
	client *http.Client
}

var _ LeadReader = (*GraphClient)(nil)

// NewGraphClient returns a client for cfg. client nil means a default
// client; cfg.Timeout bounds every call either way.
func NewGraphClient(cfg GraphConfig, client *http.Client) *GraphClient {
	if client == nil {
		client = &http.Client{}
	}
	return &GraphClient{cfg: cfg, base: strings.TrimRight(cfg.BaseURL, "/"), client: client}
}

// GraphError is a Graph API error answer: the HTTP status and Graph's
// {"error":{"message","type","code","error_subcode","is_transient",
// "fbtrace_id"}}. ReadLead returns it wrapped, and marked permanent when
// retrying cannot help (see ReadLead); match it with errors.As.
type GraphError struct {
	Status    int
	Message   string
	Type      string
	Code      int
	Subcode   int
	Transient bool
	FBTraceID string
}

func (e *GraphError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "graph answered %d", e.Status)
	if e.Type != "" || e.Code != 0 {
		fmt.Fprintf(&b, " (%s code %d", e.Type, e.Code)
		if e.Subcode != 0 {
			fmt.Fprintf(&b, " subcode %d", e.Subcode)
		}
		b.WriteString(")")
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.FBTraceID != "" {
		b.WriteString(" [fbtrace_id " + e.FBTraceID + "]")
	}
	return b.String()
}

// graphThrottleCodes are Graph's rate-limit error codes, which it answers
// with a 4xx other than 429: application (4), user (17), Page (32) and
// per-hour (613) limits. They are worth retrying.
var graphThrottleCodes = []int{4, 17, 32, 613}

// retryable says whether the error may pass: a 5xx or 429, a rate limit
// answered as a 4xx, or an error Graph marks is_transient.
func (e *GraphError) retryable() bool {
	return e.Status >= 500 || e.Status == http.StatusTooManyRequests || e.Transient ||
		slices.Contains(graphThrottleCodes, e.Code)
}

// ReadLead reads one lead and returns it as a map: id, created_time (as
// Graph writes it, "2026-11-26T20:00:00+0000"), ad_id, form_id and
// campaign_id when Graph answers them (an organic lead has no ad fields),
// "fields" with each field_data name → its first value (a string; a field
// without a value is left out), and "all_fields" with each name → every
// value ([]any of strings).
//
// Errors: no answer (including the timeout) or an answer that is a 5xx, a
// 429, a Graph rate limit or marked is_transient is a plain, retryable
// error; any other 4xx (an unknown lead, a bad or expired token, a missing
// permission) is bus.AsPermanent around a *GraphError. The access token
// never appears in an error.
func (g *GraphClient) ReadLead(ctx context.Context, leadgenID string) (map[string]any, error) {
	if strings.TrimSpace(leadgenID) == "" {
		return nil, bus.Permanentf("read Facebook lead: the leadgen id is empty")
	}
	fail := func(err error) error { return fmt.Errorf("read Facebook lead %s: %w", leadgenID, err) }
	token, err := g.cfg.token()
	if err != nil {
		// A missing token is a deployment mistake that a redrive after the
		// fix recovers, and the retries give the fix a chance.
		return nil, fail(err)
	}
	if g.cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, g.cfg.Timeout)
		defer cancel()
	}
	q := url.Values{"fields": {graphLeadFields}, "access_token": {token}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.base+"/"+url.PathEscape(leadgenID)+"?"+q.Encode(), http.NoBody)
	if err != nil {
		return nil, bus.AsPermanent(fail(redact(err, token)))
	}
	req.Header.Set("Accept", "application/json")
	resp, err := g.client.Do(req)
	if err != nil {
		return nil, bus.WithCode("graph.unreachable", fail(redact(err, token)))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxGraphAnswer))
	if err != nil {
		return nil, fail(fmt.Errorf("read answer: %w", redact(err, token)))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		gerr := graphError(resp.StatusCode, raw)
		code := fmt.Sprintf("graph.http_%d", gerr.Status)
		if gerr.Status == http.StatusTooManyRequests || slices.Contains(graphThrottleCodes, gerr.Code) {
			code = "graph.rate_limited"
		}
		if gerr.retryable() {
			return nil, bus.WithCode(code, fail(gerr))
		}
		return nil, bus.WithCode(code, bus.AsPermanent(fail(gerr)))
	}
	lead, err := decodeGraphLead(raw)
	if err != nil {
		return nil, fail(err)
	}
	return lead, nil
}

// graphError reads Graph's error envelope; a body without one keeps its
// start as the message.
func graphError(status int, raw []byte) *GraphError {
	var body struct {
		Error *struct {
			Message     string `json:"message"`
			Type        string `json:"type"`
			Code        int    `json:"code"`
			Subcode     int    `json:"error_subcode"`
			IsTransient bool   `json:"is_transient"`
			FBTraceID   string `json:"fbtrace_id"`
		} `json:"error"`
	}
	if json.Unmarshal(raw, &body) != nil || body.Error == nil {
		msg := strings.TrimSpace(string(raw))
		if cut := logging.Truncate(msg, 200); cut != msg {
			msg = cut + "…"
		}
		return &GraphError{Status: status, Message: msg}
	}
	e := body.Error
	return &GraphError{
		Status: status, Message: e.Message, Type: e.Type, Code: e.Code, Subcode: e.Subcode,
		Transient: e.IsTransient, FBTraceID: e.FBTraceID,
	}
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

// redact removes the access token from err's text: a *url.Error quotes the
// whole request URL, query included.
func redact(err error, token string) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		ue.URL = strings.ReplaceAll(ue.URL, url.QueryEscape(token), "REDACTED")
	}
	if token != "" && strings.Contains(err.Error(), token) {
		return errors.New(strings.ReplaceAll(err.Error(), token, "REDACTED"))
	}
	return err
}
