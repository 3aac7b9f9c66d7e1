package gateway

import (
	"context"
	"net"

	intakev1 "github.com/brokerflow/brokerflow/proto/brokerflow/intake/v1"
)

// ServeGRPCWith serves intake in place of the gateway's own IntakeService,
// behind the same interceptors, so a test can make a handler misbehave.
func (g *Gateway) ServeGRPCWith(ctx context.Context, ln net.Listener, intake intakev1.IntakeServiceServer) error {
	return g.serveGRPC(ctx, ln, intake)
}
