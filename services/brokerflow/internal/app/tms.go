package app

import (
	"context"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/oauth2"

	"github.com/brokerflow/brokerflow/pkg/agents"
	"github.com/brokerflow/brokerflow/pkg/crm/followupboss"
	"github.com/brokerflow/brokerflow/pkg/tms/dotloop"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
	"github.com/brokerflow/brokerflow/services/tms-sync/tmssync"
)

// SandboxAgentID is the one agent of the directory --sandbox uses when
// TMSSYNC_AGENTS_FILE is not set: the sandbox Dotloop's profile, the
// default for every contact.
const SandboxAgentID = "sandbox-agent"

// sandboxTMS points tms-sync at the sandbox's Dotloop, on unless
// TMSSYNC_TMS says otherwise, with the sandbox's client credentials, a
// directory of one default agent, Follow Up Boss read for the assigned
// agent, and the gateway verifying the sandbox's signing key.
func sandboxTMS(c *Config, environ []string) {
	if !isSet(environ, tmssync.Prefix+"TMS") {
		c.TMSSync.TMS = tmssync.TMSDotloop
	}
	if c.TMSSync.TMS != tmssync.TMSDotloop {
		return
	}
	c.TMSSync.Dotloop.ClientID, c.TMSSync.Dotloop.ClientSecret, c.TMSSync.Dotloop.ClientSecretFile = sandbox.DefaultDotloopClientID, sandbox.DefaultDotloopClientSecret, ""
	c.TMSSync.Dotloop.BaseURL = "http://" + c.SandboxAddr + "/dotloop/public/v2"
	c.TMSSync.Dotloop.AuthURL = "http://" + c.SandboxAddr + "/dotloop/oauth"
	if c.CRMSync.CRM == followupboss.Name && !isSet(environ, tmssync.Prefix+"CRM") {
		c.TMSSync.CRM, c.TMSSync.FUB = followupboss.Name, c.CRMSync.FUB
	}
	if c.TMSSync.AgentsFile == "" {
		// A directory that cannot fail validation: one agent, the default.
		c.TMSSync.Agents, _ = agents.New(agents.Agent{
			ID: SandboxAgentID, Name: "Sandbox Agent", Email: "agent@sandbox.example",
			DotloopProfileID: strconv.Itoa(sandbox.DefaultDotloopProfileID), Default: true,
		})
	}
	if len(c.Gateway.DotloopSigningKeys) == 0 && c.Gateway.DotloopSigningKeysFile == "" {
		c.Gateway.DotloopSigningKeys = []string{sandbox.DefaultDotloopSigningKey}
	}
}

// connectSandboxDotloop stores a fresh pair of the sandbox Dotloop's tokens
// in oauth_tokens, as `brokerflow connect dotloop` would after a login.
func connectSandboxDotloop(ctx context.Context, nc *nats.Conn, cfg tmssync.Config, d *sandbox.Dotloop) error {
	tok := d.IssueTokens()
	return saveTokens(ctx, nc, tmssync.OAuthConfig(cfg), &oauth2.Token{
		AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, TokenType: tok.TokenType,
		Expiry: time.Now().Add(time.Duration(tok.ExpiresIn) * time.Second),
	}, dotloop.Name)
}
