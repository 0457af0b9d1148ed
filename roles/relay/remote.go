package relay

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"

	"github.com/sipmesh/sipmesh/roles/relay/relaypb"
)

// Conns gives a connection to a node by name; *rpc.Client implements it.
type Conns interface {
	Conn(name string) (grpc.ClientConnInterface, error)
}

// Remote is the Controller of the relay on another node, over the overlay
// RPC. Errors wrap the same sentinels as the local Relay's (ErrCapacity,
// ErrPortsExhausted, …) so that SIPStatus works on both; an unreachable
// node gives an error that wraps none of them (try the next relay).
type Remote struct {
	conns Conns
	node  string
}

var _ Controller = (*Remote)(nil)

// NewRemote returns the Controller of the relay on node.
func NewRemote(conns Conns, node string) *Remote { return &Remote{conns: conns, node: node} }

// Node is the relay's node name.
func (r *Remote) Node() string { return r.node }

func (r *Remote) client() (relaypb.RelayClient, error) {
	cc, err := r.conns.Conn(r.node)
	if err != nil {
		return nil, fmt.Errorf("relay: node %s: %w", r.node, err)
	}
	return relaypb.NewRelayClient(cc), nil
}

// Allocate implements Controller; the session's owner is this node.
func (r *Remote) Allocate(ctx context.Context, req AllocateRequest) (Allocation, error) {
	c, err := r.client()
	if err != nil {
		return Allocation{}, err
	}
	resp, err := c.Allocate(ctx, &relaypb.AllocateRequest{CallId: req.CallID, Streams: specsToPB(req.Streams)})
	if err != nil {
		return Allocation{}, fromStatus(r.node, "allocate", err)
	}
	return allocationFromPB(resp)
}

// Update implements Controller.
func (r *Remote) Update(ctx context.Context, req UpdateRequest) (Allocation, error) {
	c, err := r.client()
	if err != nil {
		return Allocation{}, err
	}
	resp, err := c.Update(ctx, &relaypb.UpdateRequest{CallId: req.CallID, Streams: specsToPB(req.Streams), Relatch: req.Relatch})
	if err != nil {
		return Allocation{}, fromStatus(r.node, "update", err)
	}
	return allocationFromPB(resp)
}

// Free implements Controller.
func (r *Remote) Free(ctx context.Context, callID string) (SessionInfo, error) {
	c, err := r.client()
	if err != nil {
		return SessionInfo{}, err
	}
	resp, err := c.Free(ctx, &relaypb.FreeRequest{CallId: callID})
	if err != nil {
		return SessionInfo{}, fromStatus(r.node, "free", err)
	}
	return sessionFromPB(resp, time.Now()), nil
}

// Sessions implements Controller.
func (r *Remote) Sessions(ctx context.Context) ([]SessionInfo, error) {
	c, err := r.client()
	if err != nil {
		return nil, err
	}
	resp, err := c.List(ctx, &relaypb.ListRequest{})
	if err != nil {
		return nil, fromStatus(r.node, "list", err)
	}
	now := time.Now()
	out := make([]SessionInfo, len(resp.GetSessions()))
	for i, s := range resp.GetSessions() {
		out[i] = sessionFromPB(s, now)
	}
	return out, nil
}

// Watch calls f with every session of this node that the relay frees on
// its own (inactivity), until ctx is done or the stream breaks; it
// returns the reason. Call it again (with backoff) to keep watching.
func (r *Remote) Watch(ctx context.Context, f func(SessionInfo)) error {
	c, err := r.client()
	if err != nil {
		return err
	}
	stream, err := c.Watch(ctx, &relaypb.WatchRequest{})
	if err != nil {
		return fromStatus(r.node, "watch", err)
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fromStatus(r.node, "watch", err)
		}
		f(sessionFromPB(ev.GetSession(), time.Now()))
	}
}
