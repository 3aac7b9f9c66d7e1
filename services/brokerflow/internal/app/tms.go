package app

import (
	"context"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/oauth2"

	"github.com/brokerflow/brokerflow/pkg/agents"
	"github.com/brokerflow/brokerflow/pkg/crm/followupboss"
	"github.com/brokerflow/brokerflow/pkg/tms/skyslope"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
	"github.com/brokerflow/brokerflow/services/tms-sync/tmssync"
)

// SandboxAgentID is the one agent of the directory --sandbox uses when
// TMSSYNC_AGENTS_FILE is not set: the sandbox Dotloop's profile, the
// default for every contact.
const SandboxAgentID = "sandbox-agent"

// sandboxTMS points tms-sync at the sandbox's Dotloop (on unless
// TMSSYNC_TMS says otherwise) or, with TMSSYNC_TMS=skyslope, its SkySlope,
// with the sandbox's credentials, a directory of one default agent, Follow
// Up Boss read for the assigned agent, and the gateway verifying the
// sandbox's Dotloop signing key.
func sandboxTMS(c *Config, environ []string) {
	if !isSet(environ, tmssync.Prefix+"TMS") {
		c.TMSSync.TMS = tmssync.TMSDotloop
	}
	switch c.TMSSync.TMS {
	case tmssync.TMSDotloop:
		c.TMSSync.Dotloop.ClientID, c.TMSSync.Dotloop.ClientSecret, c.TMSSync.Dotloop.ClientSecretFile = sandbox.DefaultDotloopClientID, sandbox.DefaultDotloopClientSecret, ""
		c.TMSSync.Dotloop.BaseURL = "http://" + c.SandboxAddr + "/dotloop/public/v2"
		c.TMSSync.Dotloop.AuthURL = "http://" + c.SandboxAddr + "/dotloop/oauth"
		if len(c.Gateway.DotloopSigningKeys) == 0 && c.Gateway.DotloopSigningKeysFile == "" {
			c.Gateway.DotloopSigningKeys = []string{sandbox.DefaultDotloopSigningKey}
		}
	case tmssync.TMSSkySlope:
		ss := &c.TMSSync.SkySlope
		ss.ClientID, ss.ClientSecret, ss.ClientSecretFile = sandbox.DefaultSkySlopeClientID, sandbox.DefaultSkySlopeClientSecret, ""
		ss.AccessKey, ss.AccessSecret, ss.AccessSecretFile = sandbox.DefaultSkySlopeAccessKey, sandbox.DefaultSkySlopeAccessSecret, ""
		ss.FilesClientID, ss.FilesClientSecret, ss.FilesClientSecretFile = sandbox.DefaultSkySlopeFilesClientID, sandbox.DefaultSkySlopeFilesClientSecret, ""
		sandboxSkySlopeURLs(ss, "http://"+c.SandboxAddr)
		if !isSet(environ, tmssync.Prefix+"POLL_INTERVAL") {
			c.TMSSync.PollInterval = 5 * time.Second
		}
	default:
		return
	}
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
}

// sandboxSkySlopeURLs points c at the SkySlope of the sandbox at base.
func sandboxSkySlopeURLs(c *skyslope.Config, base string) {
	c.FormsURL, c.AuthURL, c.FilesURL = base+"/skyslope/partner/api", base+"/skyslope/oauth2", base+"/skyslope"
}

// connectSandboxTMS stores a fresh pair of the sandbox TMS's tokens in
// oauth_tokens, as `brokerflow connect dotloop|skyslope` would after a login.
func connectSandboxTMS(ctx context.Context, nc *nats.Conn, cfg tmssync.Config, sb *sandbox.Sandbox) error {
	tok := sb.Dotloop().IssueTokens()
	if cfg.TMS == tmssync.TMSSkySlope {
		tok = sb.SkySlope().IssueTokens()
	}
	return saveTokens(ctx, nc, tmssync.OAuthConfig(cfg), &oauth2.Token{
		AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, TokenType: tok.TokenType,
		Expiry: time.Now().Add(time.Duration(tok.ExpiresIn) * time.Second),
	}, cfg.TMS)
}
